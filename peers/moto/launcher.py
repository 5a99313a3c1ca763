"""Run moto's server for cordon's AWS tests with IAM authentication really enforced.

Started by `peers/moto/start`; not meant to be run by hand. It:

1. closes three gaps between moto 5.2.5 and AWS (each patch is a few lines and says why);
2. bootstraps, in-process and before the first request is served, the only identities
   that exist without authenticating: an admin user in the default account (the tests'
   seeding credentials), a `cordon-responder` user beside it and a `cordon-responder` role
   in a second account (for cross-account plans), both holding exactly
   policies/cordon-responder-iam.json (what cordon runs as in the tests);
3. serves moto's own WSGI app (what `moto.server.main()` serves) on 127.0.0.1, on a port
   the kernel picks, so there is no race for a "free" port;
4. writes the port and the admin credentials to `--env-file` (mode 0600) once it is
   serving, as KEY=VALUE lines for `start` to print.

Authentication is on from the first request: `INITIAL_NO_AUTH_ACTION_COUNT=0` is set
before moto is imported (moto reads it at import time), and moto's unauthenticated
`/moto-api/` endpoints (which can switch authentication off or wipe every account) are
refused, so every caller must sign with a real key of this server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# moto reads both settings when it is imported.
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "false")

import threading  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from xml.sax.saxutils import escape  # noqa: E402

from moto import backends as moto_backends  # noqa: E402
from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.core import exceptions as core_exceptions  # noqa: E402
from moto.iam import access_control  # noqa: E402
from moto.core.utils import utcnow as moto_utcnow  # noqa: E402
from moto.iam.models import iam_backends  # noqa: E402
from moto.sts import models as sts_models  # noqa: E402
from moto.sts.models import sts_backends  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server  # noqa: E402

SECOND_ACCOUNT_ID = "210987654321"
ADMIN_USER = "cordon-test-admin"
# The identity cordon itself runs as in the tests: it holds exactly the
# least-privilege policy shipped for cordon's responder role, so a call cordon
# makes that the policy does not grant fails a test (moto enforces IAM auth by
# action; it checks IAM calls against Resource "*", so resource scoping is not
# proven here).
RESPONDER_USER = "cordon-responder"
RESPONDER_POLICY = open(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "policies", "cordon-responder-iam.json"),
    encoding="utf-8",
).read()
RESPONDER_ROLE = "cordon-responder"
ADMIN_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
)


# --- Patch 1: an Inactive access key must not authenticate. --------------------------
# moto 5.2.5 finds the key by id and checks the signature, but never looks at the key's
# status, so a key disabled with UpdateAccessKey keeps working. AWS answers such a call
# with InvalidClientTokenId, which is what cordon's verify step relies on.
_original_user_key_init = access_control.IAMUserAccessKey.__init__


def _user_key_init_refusing_inactive(self, account_id, partition, access_key_id, headers):
    _original_user_key_init(self, account_id, partition, access_key_id, headers)
    backend = iam_backends[account_id][partition]
    for key in backend.list_access_keys(self._owner_user_name):
        if key.access_key_id == access_key_id and key.status != "Active":
            raise access_control.CreateAccessKeyFailure(reason="InvalidId")


access_control.IAMUserAccessKey.__init__ = _user_key_init_refusing_inactive


# --- Patch 2: authentication errors in the shape AWS's query protocol uses. ------------
# moto renders these errors as <ErrorResponse><Errors><Error>..., an extra <Errors> level
# that IAM and STS never send; the AWS SDK for Rust then finds no error code and reports
# an unhandled error. AWS sends <ErrorResponse><Error><Type/><Code/><Message/></Error>
# <RequestId/></ErrorResponse>; render exactly that for the auth errors moto raises.
def _query_error_xml(code: str, message: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        f"<Error><Type>Sender</Type><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error>"
        "<RequestId>cordon-moto-auth</RequestId></ErrorResponse>"
    )


def _reshape(cls):
    original_init = cls.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.description = _query_error_xml(self.error_type, self.message)

    cls.__init__ = init


for _cls in (
    core_exceptions.InvalidClientTokenIdError,
    core_exceptions.AccessDeniedError,
    core_exceptions.SignatureDoesNotMatchError,
):
    _reshape(_cls)


# --- Patch 3: evaluate `DateLessThan aws:TokenIssueTime` for role sessions. -------------
# moto evaluates no condition operator but StringEquals and applies a statement whose
# condition it cannot evaluate as if it had none. The revocation of a role's sessions (a
# Deny on `aws:TokenIssueTime` before a cut-off, what the IAM console's "revoke active
# sessions" writes) would then deny every session, including the ones issued after it,
# and a test could not tell revocation from a deny-all. AWS applies such a statement
# only to sessions issued before the cut-off, and never to long-term user keys (which
# carry no token issue time). Only this one condition key is evaluated here.
_request_token_issued = threading.local()
_original_assumed_init = access_control.AssumedRoleAccessKey.__init__
_original_user_init_with_patch_1 = access_control.IAMUserAccessKey.__init__
_original_statement_permitted = access_control.IAMPolicyStatement.is_action_permitted


def _assumed_init_recording_issue_time(self, account_id, partition, access_key_id, headers):
    _request_token_issued.at = None
    _original_assumed_init(self, account_id, partition, access_key_id, headers)
    for role in sts_backends[account_id][partition].assumed_roles:
        if role.access_key_id == access_key_id:
            _request_token_issued.at = getattr(role, "cordon_issued_at", None)


def _user_init_without_issue_time(self, *args, **kwargs):
    _request_token_issued.at = None
    _original_user_init_with_patch_1(self, *args, **kwargs)


def _statement_permitted(self, action, resource="*", principal=None, incoming=None):
    cond = self._statement.get("Condition") or {}
    cutoff = (cond.get("DateLessThan") or {}).get("aws:TokenIssueTime")
    if isinstance(cutoff, str):
        issued = getattr(_request_token_issued, "at", None)
        limit = datetime.fromisoformat(cutoff.replace("Z", "+00:00"))
        limit = limit.astimezone(timezone.utc).replace(tzinfo=None)
        if issued is None or not issued < limit:
            return access_control.PermissionResult.NEUTRAL
    return _original_statement_permitted(self, action, resource, principal, incoming)


_original_assumed_role_model_init = sts_models.AssumedRole.__init__


def _assumed_role_model_init(self, *args, **kwargs):
    _original_assumed_role_model_init(self, *args, **kwargs)
    self.cordon_issued_at = moto_utcnow()


sts_models.AssumedRole.__init__ = _assumed_role_model_init
access_control.AssumedRoleAccessKey.__init__ = _assumed_init_recording_issue_time
access_control.IAMUserAccessKey.__init__ = _user_init_without_issue_time
access_control.IAMPolicyStatement.is_action_permitted = _statement_permitted


# --- Speed-up (no behaviour change): find moto's service modules once. ----------------
# moto 5.2.5 lists its package directory (a listdir and ~150 isdir calls) on every request,
# under the dispatcher's global lock, only to ask whether the Host names a module; the
# answer cannot change while the server runs. Measured under scripts/bench's concurrent
# load, this was the largest CPU cost per request after the request log.
_MOTO_MODULES = frozenset(moto_backends.list_of_moto_modules())
moto_backends.list_of_moto_modules = lambda: _MOTO_MODULES


def bootstrap() -> dict[str, str]:
    """Create the identities the tests start from, before anything is served."""
    iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    iam.create_user(region_name="us-east-1", user_name=ADMIN_USER, path="/", tags=[])
    iam.put_user_policy(ADMIN_USER, "cordon-test-admin", ADMIN_POLICY)
    key = iam.create_access_key(ADMIN_USER)
    iam.create_user(region_name="us-east-1", user_name=RESPONDER_USER, path="/", tags=[])
    iam.put_user_policy(RESPONDER_USER, "cordon-responder", RESPONDER_POLICY)
    responder_key = iam.create_access_key(RESPONDER_USER)

    # The responder role a cross-account plan assumes in the second account.
    other = iam_backends[SECOND_ACCOUNT_ID]["aws"]
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
    other.create_role(
        role_name=RESPONDER_ROLE,
        assume_role_policy_document=trust,
        path="/",
        permissions_boundary=None,
        description="cordon responder for cross-account tests",
        tags=[],
        max_session_duration="3600",
    )
    other.put_role_policy(RESPONDER_ROLE, "cordon-responder", RESPONDER_POLICY)
    return {
        "CORDON_TEST_AWS_ACCESS_KEY_ID": key.access_key_id,
        "CORDON_TEST_AWS_SECRET_ACCESS_KEY": key.secret_access_key,
        "CORDON_TEST_AWS_RESPONDER_KEY_ID": responder_key.access_key_id,
        "CORDON_TEST_AWS_RESPONDER_SECRET": responder_key.secret_access_key,
        "CORDON_TEST_AWS_ACCOUNT_ID": DEFAULT_ACCOUNT_ID,
        "CORDON_TEST_AWS_SECOND_ACCOUNT_ID": SECOND_ACCOUNT_ID,
        "CORDON_TEST_AWS_ROLE_ARN_TEMPLATE": f"arn:aws:iam::{{account}}:role/{RESPONDER_ROLE}",
    }


class RefuseMotoApi:
    """Refuse moto's unauthenticated control endpoints (reset, reset-auth, state)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            body = b"moto-api is disabled on this server: it would bypass IAM authentication\n"
            start_response(
                "403 Forbidden",
                [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return self.app(environ, start_response)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--env-file", required=True)
    parser.add_argument(
        "--no-request-log",
        action="store_true",
        help="do not log each request (scripts/bench: the log line costs moto CPU per request)",
    )
    args = parser.parse_args()
    if args.no_request_log:
        MotoRequestHandler.log_request = lambda *a, **k: None

    env = bootstrap()
    app = RefuseMotoApi(DomainDispatcherApplication(create_backend_app))
    server = make_server(
        "127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    port = server.socket.getsockname()[1]
    env = {"CORDON_TEST_AWS_ENDPOINT": f"http://127.0.0.1:{port}", **env}

    tmp = args.env_file + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for k, v in env.items():
            f.write(f"{k}={v}\n")
    os.replace(tmp, args.env_file)
    print(f"moto serving on 127.0.0.1:{port} with IAM authentication enforced", file=sys.stderr)
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
