"""Run moto's server for cordon's AWS tests with IAM authentication really enforced.

Started by `peers/moto/start`; not meant to be run by hand. It:

1. closes the gaps between moto 5.2.5 and AWS that cordon's tests meet (each patch is a few lines and says why),
   among them CloudTrail event history for the IAM and STS requests it serves (Patch 8);
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
# An account only one test writes to (the account-listing identification, whose choice
# depends on how many users the account holds: in the shared account that count grows
# with every other test running beside it).
QUIET_ACCOUNT_ID = "314159265358"
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


# --- Speed-up (no behaviour change): find an access key's user through moto's own index.
# moto 5.2.5 finds the user of an access key by scanning every user's keys: on every
# request signed with a user's key (IAMUserAccessKey.__init__, through Patch 1), on
# GetAccessKeyLastUsed (every key of every account) and wherever its backend is asked
# get_user_from_access_key_id (Patches 4 and 8). With 500 users, py-spy put the scans at
# about a tenth of moto's time under scripts/bench's load. The backend already keeps its
# keys by id (`access_keys`, filled by CreateAccessKey); a hit there counts only when that
# very key object is still in its user's list (a deleted key or user is never found this
# way), and anything else is answered by moto's own scan, so every answer is the one the
# scan gives (access key ids are unique).
_iam_backend_cls = type(iam_backends[DEFAULT_ACCOUNT_ID]["aws"])


def _indexed_key_owner(backend, access_key_id):
    key = backend.access_keys.get(access_key_id)
    if key is None or key.user_name is None:
        return None
    user = backend.users.get(key.user_name)
    if user is None or not any(k is key for k in user.access_keys):
        return None
    return user, key


_scanning_user_key_init = access_control.IAMUserAccessKey.__init__


def _user_key_init_indexed(self, account_id, partition, access_key_id, headers):
    found = _indexed_key_owner(iam_backends[account_id][partition], access_key_id)
    if found is None:
        return _scanning_user_key_init(self, account_id, partition, access_key_id, headers)
    # What moto's __init__ does once its scan has found the key.
    user, key = found
    self.account_id = account_id
    self.partition = partition
    self._owner_user_name = user.name
    self._access_key_id = access_key_id
    self._secret_access_key = key.secret_access_key
    if "X-Amz-Security-Token" in headers:
        raise access_control.CreateAccessKeyFailure(reason="InvalidToken")


access_control.IAMUserAccessKey.__init__ = _user_key_init_indexed

_scanning_user_from_key = _iam_backend_cls.get_user_from_access_key_id
_scanning_key_last_used = _iam_backend_cls.get_access_key_last_used


def _user_from_access_key_id(self, access_key_id):
    found = _indexed_key_owner(self, access_key_id)
    return found[0] if found is not None else _scanning_user_from_key(self, access_key_id)


def _access_key_last_used(self, access_key_id):
    found = _indexed_key_owner(self, access_key_id)
    if found is None:
        return _scanning_key_last_used(self, access_key_id)
    return {"user_name": found[1].user_name, "last_used": found[1].last_used}


_iam_backend_cls.get_user_from_access_key_id = _user_from_access_key_id
_iam_backend_cls.get_access_key_last_used = _access_key_last_used


# --- Speed-up (no behaviour change): a response class's method names, listed once. -----
# moto 5.2.5 lists every function of the response class with inspect.getmembers on every
# request (BaseResponse.call_action), only to ask whether the action names one of them;
# the classes are complete (this file's patches included) before the first request, so
# the answer cannot change while the server runs. py-spy: about 8 % of moto's time under
# scripts/bench's load.
from moto.core import responses as _core_responses  # noqa: E402

_listing_method_names = _core_responses.method_names_from_class
_method_names: dict[type, frozenset] = {}


def _method_names_once(clazz):
    names = _method_names.get(clazz)
    if names is None:
        names = _method_names[clazz] = frozenset(_listing_method_names(clazz))
    return names


_core_responses.method_names_from_class = _method_names_once


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


# A JSON-protocol service (CloudTrail, Patch 8) gets the same error in its own shape,
# `{"__type": code, "message": ...}`, as AWS sends it there.
_request_is_json = threading.local()


def _reshape(cls):
    original_init = cls.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if getattr(_request_is_json, "value", False):
            self.description = json.dumps({"__type": self.error_type, "message": self.message})
        else:
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


def _utc_naive(value: str) -> datetime:
    limit = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return limit.astimezone(timezone.utc).replace(tzinfo=None)


def _statement_permitted(self, action, resource="*", principal=None, incoming=None):
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_Date
    # A date condition on a key the request does not carry (a long-term key has no
    # aws:TokenIssueTime) is false, so the statement does not apply.
    cond = self._statement.get("Condition") or {}
    issued = getattr(_request_token_issued, "at", None)
    for operator, holds in (
        ("DateLessThan", lambda t, limit: t < limit),
        ("DateGreaterThan", lambda t, limit: t > limit),
    ):
        bound = (cond.get(operator) or {}).get("aws:TokenIssueTime")
        if isinstance(bound, str):
            if issued is None or not holds(issued, _utc_naive(bound)):
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


# --- Patch 4: GetSessionToken / GetFederationToken mint real session credentials. -----
# moto 5.2.5 answers both with one fixed `AKIA...EXAMPLE` pair that authenticates as
# nobody, so a test cannot show that such a session outlives the key that minted it.
# AWS documents (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html,
# .../API_GetFederationToken.html, and
# https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp_control-access_getsessiontoken.html):
# * the credentials are new `ASIA` keys with a session token, valid until their
#   expiration, acting with the permissions of the IAM user that called (a federation
#   token: intersected with the session policy passed, which this patch does not evaluate:
#   no test here passes one);
# * they stay valid when the user's access key is deactivated (that is why cordon adds a
#   deny on aws:TokenIssueTime: the request carries the session's issue time, which
#   Patch 3 evaluates);
# * they cannot be minted with session credentials;
# * GetSessionToken credentials cannot call IAM (without MFA) nor STS other than
#   AssumeRole and GetCallerIdentity; federation credentials cannot call IAM nor STS
#   other than GetCallerIdentity.
# GetCallerIdentity names the user (`...:user/NAME`) or the federated user
# (`arn:aws:sts::ACCOUNT:federated-user/NAME`); GetAccessKeyInfo names the account.
from moto.sts import responses as sts_responses  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402
from datetime import timedelta  # noqa: E402
import secrets as _secrets  # noqa: E402


class _UserSession:
    def __init__(self, account_id, partition, user_name, key, duration, federated_name):
        self.account_id = account_id
        self.partition = partition
        self.user_name = user_name
        self.access_key_id = key.access_key_id
        self.secret_access_key = key.secret_access_key
        self.session_token = "FwoGZXIvYXdzE" + _secrets.token_urlsafe(96)
        self.issued_at = moto_utcnow()
        self.expiration = self.issued_at + timedelta(seconds=duration)
        self.federated_name = federated_name

    @property
    def arn(self) -> str:
        if self.federated_name is not None:
            return f"arn:{self.partition}:sts::{self.account_id}:federated-user/{self.federated_name}"
        return f"arn:{self.partition}:iam::{self.account_id}:user/{self.user_name}"


_user_sessions: dict[str, _UserSession] = {}
_user_sessions_lock = threading.Lock()


class _UserSessionAccessKey(access_control.IAMUserAccessKey):
    """A request signed with a user session: the user's policies, the session's issue time."""

    def __init__(self, session: _UserSession, headers):
        self.account_id = session.account_id
        self.partition = session.partition
        self.session = session
        self._owner_user_name = session.user_name
        self._access_key_id = session.access_key_id
        self._secret_access_key = session.secret_access_key
        _request_token_issued.at = session.issued_at
        if headers.get("X-Amz-Security-Token") != session.session_token:
            raise access_control.CreateAccessKeyFailure(reason="InvalidToken")
        if moto_utcnow() >= session.expiration:
            raise access_control.CreateAccessKeyFailure(reason="InvalidToken")

    @property
    def arn(self) -> str:
        return self.session.arn

    def create_credentials(self):
        return access_control.Credentials(
            self._access_key_id, self._secret_access_key, self.session.session_token
        )


_original_create_access_key = access_control.create_access_key


def _create_access_key_with_user_sessions(account_id, partition, access_key_id, headers):
    session = _user_sessions.get(access_key_id)
    if session is not None:
        return _UserSessionAccessKey(session, headers)
    return _original_create_access_key(account_id, partition, access_key_id, headers)


access_control.create_access_key = _create_access_key_with_user_sessions

_original_check_action_permitted = access_control.IAMRequestBase.check_action_permitted


def _check_action_permitted_for_user_sessions(self, resource):
    key = getattr(self, "_access_key", None)
    if isinstance(key, _UserSessionAccessKey):
        action = self._action
        allowed_sts = (
            ("sts:GetCallerIdentity",)
            if key.session.federated_name is not None
            else ("sts:GetCallerIdentity", "sts:AssumeRole")
        )
        if action.startswith("iam:") or (
            action.startswith("sts:") and action not in allowed_sts
        ):
            self._raise_access_denied()
    return _original_check_action_permitted(self, resource)


access_control.IAMRequestBase.check_action_permitted = _check_action_permitted_for_user_sessions


def _mint_user_session(response, federated_name):
    caller = response.get_access_key()
    if caller in _user_sessions or not caller.startswith("AKIA"):
        raise core_exceptions.AccessDeniedError(
            user_arn=caller, action="sts:GetSessionToken with session credentials"
        )
    account_id = response.current_account
    partition = response.partition
    backend = iam_backends[account_id][partition]
    user = backend.get_user_from_access_key_id(caller)
    if user is None:
        raise core_exceptions.InvalidClientTokenIdError()
    duration = response._get_int_param("DurationSeconds", 43200)
    key = backend.create_temp_access_key()
    session = _UserSession(account_id, partition, user.name, key, duration, federated_name)
    with _user_sessions_lock:
        _user_sessions[session.access_key_id] = session
    return session


def _credentials(session: _UserSession) -> dict:
    return {
        "AccessKeyId": session.access_key_id,
        "SecretAccessKey": session.secret_access_key,
        "SessionToken": session.session_token,
        "Expiration": session.expiration,
    }


def _get_session_token(self):
    session = _mint_user_session(self, None)
    return ActionResult({"Credentials": _credentials(session)})


_original_get_federation_token = sts_responses.TokenResponse.get_federation_token


def _get_federation_token(self):
    name = self._get_param("Name")
    # moto's own checks of the request (policy length) first.
    _original_get_federation_token(self)
    session = _mint_user_session(self, name)
    return ActionResult(
        {
            "Credentials": _credentials(session),
            "FederatedUser": {
                "FederatedUserId": f"{session.account_id}:{name}",
                "Arn": session.arn,
            },
            "PackedPolicySize": 6,
        }
    )


sts_responses.TokenResponse.get_session_token = _get_session_token
sts_responses.TokenResponse.get_federation_token = _get_federation_token

_original_get_caller_identity = sts_models.STSBackend.get_caller_identity
_original_get_access_key_info = sts_models.STSBackend.get_access_key_info


def _get_caller_identity(self, access_key_id, region):
    session = _user_sessions.get(access_key_id)
    if session is None:
        return _original_get_caller_identity(self, access_key_id, region)
    user = iam_backends[session.account_id][session.partition].get_user(session.user_name)
    user_id = user.id if session.federated_name is None else f"{session.account_id}:{session.federated_name}"
    return user_id, session.arn, session.account_id


def _get_access_key_info(self, access_key_id):
    session = _user_sessions.get(access_key_id)
    if session is not None:
        return {"Account": session.account_id}
    return _original_get_access_key_info(self, access_key_id)


sts_models.STSBackend.get_caller_identity = _get_caller_identity
sts_models.STSBackend.get_access_key_info = _get_access_key_info


# --- Patch 5: service-specific credentials. -------------------------------------------
# moto 5.2.5 answers Create/List/Update/DeleteServiceSpecificCredential with "not
# implemented", so a user's CodeCommit or Keyspaces password could not be listed among
# the credentials that stay alive. AWS documents them in
# https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateServiceSpecificCredential.html
# (and List/Update/Delete): per user, up to two per service, Active or Inactive, the
# password returned once at creation and never again. Kept in memory, per account.
from moto.iam import responses as iam_responses  # noqa: E402
from moto.iam.exceptions import NotFoundException as IAMNotFoundException  # noqa: E402
from moto.iam.exceptions import LimitExceededException as IAMLimitExceededException  # noqa: E402

_service_credentials: dict[tuple[str, str], list[dict]] = {}


def _service_creds_of(response, user_name):
    response.backend.get_user(user_name)  # NoSuchEntity for an unknown user
    return _service_credentials.setdefault((response.current_account, user_name), [])


def _create_service_specific_credential(self):
    user_name = self._get_param("UserName")
    service = self._get_param("ServiceName")
    creds = _service_creds_of(self, user_name)
    if sum(1 for c in creds if c["ServiceName"] == service) >= 2:
        raise IAMLimitExceededException(
            "Cannot exceed quota for ServiceSpecificCredentialsPerUserPerService: 2"
        )
    cred = {
        "CreateDate": moto_utcnow(),
        "ServiceName": service,
        "ServiceUserName": f"{user_name}-at-{self.current_account}",
        "ServiceSpecificCredentialId": "ACCA" + _secrets.token_hex(9).upper()[:17],
        "UserName": user_name,
        "Status": "Active",
    }
    creds.append(cred)
    return ActionResult(
        {"ServiceSpecificCredential": {**cred, "ServicePassword": _secrets.token_urlsafe(33)}}
    )


def _list_service_specific_credentials(self):
    user_name = self._get_param("UserName")
    service = self._get_param("ServiceName")
    creds = [
        dict(c)
        for c in _service_creds_of(self, user_name)
        if service is None or c["ServiceName"] == service
    ]
    return ActionResult({"ServiceSpecificCredentials": creds, "IsTruncated": False})


def _find_service_credential(self):
    cred_id = self._get_param("ServiceSpecificCredentialId")
    for c in _service_creds_of(self, self._get_param("UserName")):
        if c["ServiceSpecificCredentialId"] == cred_id:
            return c
    raise IAMNotFoundException(f"No such credential {cred_id}")


def _update_service_specific_credential(self):
    _find_service_credential(self)["Status"] = self._get_param("Status")
    return ActionResult({})


def _delete_service_specific_credential(self):
    cred = _find_service_credential(self)
    _service_creds_of(self, cred["UserName"]).remove(cred)
    return ActionResult({})


iam_responses.IamResponse.create_service_specific_credential = _create_service_specific_credential
iam_responses.IamResponse.list_service_specific_credentials = _list_service_specific_credentials
iam_responses.IamResponse.update_service_specific_credential = _update_service_specific_credential
iam_responses.IamResponse.delete_service_specific_credential = _delete_service_specific_credential


# --- Patch 6: IAM quotas on inline policy size and attached managed policies. --------
# moto 5.2.5 knows the quotas (its account summary lists them) but enforces neither, so
# a test could not show containment falling back when a principal is near them. AWS
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html): the
# inline policies of a user share 2,048 characters, of a role 10,240 (white space not
# counted); a user or role has at most 10 managed policies attached (the default; it
# can be raised to 20). Past either, the call fails with LimitExceeded.
_INLINE_QUOTA = {"user": 2048, "role": 10240}
_ATTACHED_QUOTA = 10


def _size_without_space(doc: str) -> int:
    return sum(1 for ch in doc if not ch.isspace())


def _check_inline(kind, entity, policy_name, policy_json):
    total = _size_without_space(policy_json) + sum(
        _size_without_space(d) for n, d in entity.policies.items() if n != policy_name
    )
    if total > _INLINE_QUOTA[kind]:
        raise IAMLimitExceededException(
            f"Maximum policy size of {_INLINE_QUOTA[kind]} bytes exceeded for {kind} {entity.name}"
        )


def _check_attached(kind, entity, policy_arn):
    if policy_arn not in entity.managed_policies and len(entity.managed_policies) >= _ATTACHED_QUOTA:
        per = "PoliciesPerUser" if kind == "user" else "PoliciesPerRole"
        raise IAMLimitExceededException(f"Cannot exceed quota for {per}: {_ATTACHED_QUOTA}")


_original_put_user_policy = _iam_backend_cls.put_user_policy
_original_put_role_policy = _iam_backend_cls.put_role_policy
_original_attach_user_policy = _iam_backend_cls.attach_user_policy
_original_attach_role_policy = _iam_backend_cls.attach_role_policy


def _put_user_policy(self, user_name, policy_name, policy_json):
    _check_inline("user", self.get_user(user_name), policy_name, policy_json)
    return _original_put_user_policy(self, user_name, policy_name, policy_json)


def _put_role_policy(self, role_name, policy_name, policy_json):
    _check_inline("role", self.get_role(role_name), policy_name, policy_json)
    return _original_put_role_policy(self, role_name, policy_name, policy_json)


def _attach_user_policy(self, policy_arn, user_name):
    _check_attached("user", self.get_user(user_name), policy_arn)
    return _original_attach_user_policy(self, policy_arn, user_name)


def _attach_role_policy(self, policy_arn, role_name):
    _check_attached("role", self.get_role(role_name), policy_arn)
    return _original_attach_role_policy(self, policy_arn, role_name)


_iam_backend_cls.put_user_policy = _put_user_policy
_iam_backend_cls.put_role_policy = _put_role_policy
_iam_backend_cls.attach_user_policy = _attach_user_policy
_iam_backend_cls.attach_role_policy = _attach_role_policy

# And the groups a user is in: at most 10 (the same page: "Groups an IAM user can be a
# member of: 10"); one more fails with LimitExceeded. cordon's last fallback for a user's
# session cut-off at both policy quotas is a group, so a test must see this quota too.
_GROUPS_PER_USER_QUOTA = 10
_original_add_user_to_group = _iam_backend_cls.add_user_to_group


def _add_user_to_group(self, group_name, user_name):
    user = self.get_user(user_name)
    group = self.get_group(group_name)
    if user not in group.users and len(self.get_groups_for_user(user_name)) >= _GROUPS_PER_USER_QUOTA:
        raise IAMLimitExceededException(f"Cannot exceed quota for GroupsPerUser: {_GROUPS_PER_USER_QUOTA}")
    return _original_add_user_to_group(self, group_name, user_name)


_iam_backend_cls.add_user_to_group = _add_user_to_group


# --- Patch 7: check SigV4 over the body as sent. ----------------------------------------
# For a form-encoded POST (the Query protocol of IAM and STS) moto 5.2.5 gets an empty raw
# body from werkzeug (which parsed the form) and signs a re-encoding of the parsed
# parameters instead, with `+` for a space where the AWS SDK for Rust sent `%20`: a
# correctly signed UploadSSHPublicKey (whose body has a space) is then refused with
# SignatureDoesNotMatch. AWS hashes the payload exactly as received
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html). The WSGI
# wrapper below keeps the bytes it received; the check uses them.
import io  # noqa: E402

_raw_request_body = threading.local()
_original_iam_request_init = access_control.IAMRequestBase.__init__


def _iam_request_init_with_raw_body(self, account_id, method, path, data, body, headers, action):
    raw = getattr(_raw_request_body, "value", None)
    if not body and raw:
        body = raw
    _original_iam_request_init(self, account_id, method, path, data, body, headers, action)


access_control.IAMRequestBase.__init__ = _iam_request_init_with_raw_body


# --- Patch 8: CloudTrail event history of the IAM and STS requests served. ------------
# moto 5.2.5 records no event for the requests it serves and answers CloudTrail
# LookupEvents with "not implemented", so a test could not show what a leaked key did.
# AWS records a management event for every IAM and STS call
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/cloudtrail-integration.html): which
# key signed it (userIdentity.accessKeyId), the event name and source, the request
# parameters and the response elements (no secrets: a new key's secret, a session token
# or a password never appear). LookupEvents
# (https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html)
# returns the events of the caller's account and region, newest first, filtered by at
# most one lookup attribute (AccessKeyId, EventId, EventName, EventSource, ReadOnly,
# ResourceName, ResourceType, Username) and by StartTime/EndTime, at most MaxResults
# (1-50, default 50) a page, with a NextToken that must come back with the same
# parameters. Here: an event is recorded for each IAM or STS request moto answered with
# success (a refused or failed request is not an API call that happened), kept in memory
# (the newest 200,000).
import collections  # noqa: E402
import uuid  # noqa: E402
import base64  # noqa: E402
import hashlib  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402
from moto.core.responses import BaseResponse  # noqa: E402
from moto.core.exceptions import JsonRESTError  # noqa: E402
from moto.cloudtrail import responses as cloudtrail_responses  # noqa: E402
from moto.iam.models import get_account_id_from  # noqa: E402

_trail = collections.deque(maxlen=200_000)
_trail_lock = threading.Lock()
# The same events by the key that signed them, oldest first (no behaviour change: a lookup
# by AccessKeyId reads these instead of the whole history; each entry leaves both when it
# is the oldest of the 200,000).
_trail_by_key: dict[str, collections.deque] = {}
_trail_seq = iter(range(1, 1 << 62))
# Never in an event: CloudTrail leaves them out (passwords are HIDDEN_DUE_TO_SECURITY_REASONS).
_TRAIL_SECRETS = {"SecretAccessKey", "SessionToken", "ServicePassword", "PrivateKey"}
_TRAIL_PASSWORDS = {"Password", "NewPassword", "OldPassword"}
_READ_ONLY_PREFIXES = ("Get", "List", "Generate", "Simulate", "Decode")


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_to_json(el):
    children = list(el)
    if not children:
        return el.text
    if all(_local(c.tag) == "member" for c in children):
        return [_xml_to_json(c) for c in children]
    return {
        _lower_first(_local(c.tag)): _xml_to_json(c)
        for c in children
        if _local(c.tag) not in _TRAIL_SECRETS
    }


def _response_elements(body):
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    for el in root.iter():
        if _local(el.tag).endswith("Result"):
            return _xml_to_json(el) if list(el) else None
    return None


def _user_identity(response, key, account):
    partition = response.partition
    user = iam_backends[account][partition].get_user_from_access_key_id(key)
    if user is not None:
        return {"type": "IAMUser", "principalId": user.id, "arn": user.arn,
                "accountId": account, "accessKeyId": key, "userName": user.name}, user.name
    session = _user_sessions.get(key)
    if session is not None:
        kind = "IAMUser" if session.federated_name is None else "FederatedUser"
        return {"type": kind, "arn": session.arn, "accountId": session.account_id,
                "accessKeyId": key, "userName": session.user_name}, session.user_name
    for role in sts_backends[account][partition].assumed_roles:
        if role.access_key_id == key:
            return {"type": "AssumedRole", "arn": role.arn, "accountId": account,
                    "accessKeyId": key}, role.session_name
    return {"type": "Unknown", "accessKeyId": key, "accountId": account}, None


def _resources(request, response):
    out = []
    for param, kind in (("userName", "AWS::IAM::User"), ("roleName", "AWS::IAM::Role"),
                        ("groupName", "AWS::IAM::Group"), ("policyArn", "AWS::IAM::Policy"),
                        ("roleArn", "AWS::IAM::Role")):
        if isinstance(request.get(param), str):
            out.append({"ResourceType": kind, "ResourceName": request[param]})
    created = ((response or {}).get("accessKey") or {}).get("accessKeyId") if isinstance(response, dict) else None
    if created:
        out.append({"ResourceType": "AWS::IAM::AccessKey", "ResourceName": created})
    return out


def _record_event(response, body):
    action = response._get_action()
    key = response.get_access_key()
    account = response.current_account
    request = {}
    for k, v in response.querystring.items():
        if k in ("Action", "Version") or "." in k or not v:
            continue
        request[_lower_first(k)] = "HIDDEN_DUE_TO_SECURITY_REASONS" if k in _TRAIL_PASSWORDS else v[0]
    read_only = action.startswith(_READ_ONLY_PREFIXES)
    elements = None if read_only else _response_elements(body)
    identity, username = _user_identity(response, key, account)
    now = moto_utcnow()
    source = f"{response.service_name}.amazonaws.com"
    event_id = str(uuid.uuid4())
    record = {
        "eventVersion": "1.08",
        "userIdentity": identity,
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": source,
        "eventName": action,
        # IAM is global: its events are recorded in US East (N. Virginia).
        "awsRegion": "us-east-1" if response.service_name == "iam" else response.region,
        "sourceIPAddress": "127.0.0.1",
        "userAgent": response.headers.get("User-Agent", ""),
        "requestParameters": request or None,
        "responseElements": elements,
        "requestID": str(uuid.uuid4()),
        "eventID": event_id,
        "readOnly": read_only,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    with _trail_lock:
        if len(_trail) == _trail.maxlen:
            oldest = _trail[0]
            same_key = _trail_by_key[oldest["Event"]["AccessKeyId"]]
            same_key.popleft()
            if not same_key:
                del _trail_by_key[oldest["Event"]["AccessKeyId"]]
        entry = {
            "seq": next(_trail_seq),
            "time": now.replace(tzinfo=timezone.utc).timestamp(),
            "account": account,
            "region": record["awsRegion"],
            "Event": {
                "EventId": event_id,
                "EventName": action,
                "ReadOnly": "true" if read_only else "false",
                "AccessKeyId": key,
                "EventTime": now.replace(tzinfo=timezone.utc).timestamp(),
                "EventSource": source,
                "Username": username,
                "Resources": _resources(request, elements),
                "CloudTrailEvent": json.dumps(record),
            },
        }
        _trail.append(entry)
        _trail_by_key.setdefault(key, collections.deque()).append(entry)


_original_call_action = BaseResponse.call_action


def _call_action_recording(self):
    status, headers, body = _original_call_action(self)
    if self.service_name in ("iam", "sts") and int(status) < 300:
        _record_event(self, body)
    return status, headers, body


BaseResponse.call_action = _call_action_recording


class _TrailError(JsonRESTError):
    code = 400


_LOOKUP_KEYS = {"AccessKeyId", "EventId", "EventName", "EventSource", "ReadOnly",
                "ResourceName", "ResourceType", "Username"}


def _matches(event, key, value):
    if key in ("ResourceName", "ResourceType"):
        return any(r.get(key) == value for r in event["Resources"])
    return event.get(key) == value


def _lookup_events(self):
    params = json.loads(self.body or "{}")
    attrs = params.get("LookupAttributes") or []
    if len(attrs) > 1:
        raise _TrailError("InvalidLookupAttributesException",
                          "You can specify only one lookup attribute.")
    for a in attrs:
        if a.get("AttributeKey") not in _LOOKUP_KEYS:
            raise _TrailError("InvalidLookupAttributesException",
                              f"Invalid lookup attribute key {a.get('AttributeKey')}.")
    start, end = params.get("StartTime"), params.get("EndTime")
    if start is not None and end is not None and float(start) > float(end):
        raise _TrailError("InvalidTimeRangeException", "StartTime must be before EndTime.")
    limit = params.get("MaxResults", 50)
    if not isinstance(limit, int) or not 1 <= limit <= 50:
        raise _TrailError("InvalidMaxResultsException", "MaxResults must be from 1 to 50.")
    # The token names where the previous page ended and the parameters it was made for.
    shape = {k: v for k, v in params.items() if k != "NextToken"}
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]
    after = None
    if params.get("NextToken") is not None:
        try:
            seq, was = base64.b64decode(params["NextToken"]).decode().split(":")
            after = int(seq)
        except (ValueError, UnicodeDecodeError):
            raise _TrailError("InvalidNextTokenException", "Invalid NextToken.")
        if was != digest:
            raise _TrailError("InvalidNextTokenException",
                              "NextToken was not issued for these parameters.")
    with _trail_lock:
        if len(attrs) == 1 and attrs[0].get("AttributeKey") == "AccessKeyId":
            entries = list(_trail_by_key.get(attrs[0].get("AttributeValue"), ()))
        else:
            entries = list(_trail)
    page, more = [], False
    for e in reversed(entries):  # newest first
        if after is not None and e["seq"] >= after:
            continue
        if e["account"] != self.current_account or e["region"] != self.region:
            continue
        if start is not None and e["time"] < float(start):
            continue
        if end is not None and e["time"] > float(end):
            continue
        if not all(_matches(e["Event"], a["AttributeKey"], a.get("AttributeValue")) for a in attrs):
            continue
        if len(page) == limit:
            more = True
            break
        page.append(e)
    out = {"Events": [e["Event"] for e in page]}
    if more:
        out["NextToken"] = base64.b64encode(f"{page[-1]['seq']}:{digest}".encode()).decode()
    return json.dumps(out)


cloudtrail_responses.CloudTrailResponse.lookup_events = _lookup_events


# --- Patch 9: a conditional PutObject is atomic. ----------------------------------------
# moto 5.2.5's PutObject checks `If-None-Match: *` / `If-Match` and then stores the object
# as two separate steps, on a threaded server: two concurrent creates of one key can both
# pass the check and both answer 200, the second overwriting the first (seen as a lost
# audit record when four writers append at once). S3 decides conditional writes to one key
# atomically: "if multiple conditional writes occur for the same object name, the first
# write operation to finish succeeds", the others get 412 or 409
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html). Every
# PutObject carrying a condition runs under one lock here, so the check and the store are
# one step; unconditional PUTs are untouched.
from moto.s3.responses import S3Response  # noqa: E402

_conditional_put_lock = threading.Lock()
_original_put_object = S3Response.put_object


def _put_object_atomic_when_conditional(self):
    if self.headers.get("If-None-Match") or self.headers.get("If-Match"):
        with _conditional_put_lock:
            return _original_put_object(self)
    return _original_put_object(self)


S3Response.put_object = _put_object_atomic_when_conditional


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
    # The tests' seeding credentials in the second account (fixtures there: the responder
    # role holds only cordon's least-privilege policy, which cannot create users).
    other.create_user(region_name="us-east-1", user_name=ADMIN_USER, path="/", tags=[])
    other.put_user_policy(ADMIN_USER, "cordon-test-admin", ADMIN_POLICY)
    second_key = other.create_access_key(ADMIN_USER)
    quiet = iam_backends[QUIET_ACCOUNT_ID]["aws"]
    quiet.create_user(region_name="us-east-1", user_name=ADMIN_USER, path="/", tags=[])
    quiet.put_user_policy(ADMIN_USER, "cordon-test-admin", ADMIN_POLICY)
    quiet_key = quiet.create_access_key(ADMIN_USER)
    return {
        "CORDON_TEST_AWS_ACCESS_KEY_ID": key.access_key_id,
        "CORDON_TEST_AWS_SECRET_ACCESS_KEY": key.secret_access_key,
        "CORDON_TEST_AWS_RESPONDER_KEY_ID": responder_key.access_key_id,
        "CORDON_TEST_AWS_RESPONDER_SECRET": responder_key.secret_access_key,
        "CORDON_TEST_AWS_ACCOUNT_ID": DEFAULT_ACCOUNT_ID,
        "CORDON_TEST_AWS_SECOND_ACCOUNT_ID": SECOND_ACCOUNT_ID,
        "CORDON_TEST_AWS_SECOND_ADMIN_KEY_ID": second_key.access_key_id,
        "CORDON_TEST_AWS_SECOND_ADMIN_SECRET": second_key.secret_access_key,
        "CORDON_TEST_AWS_ROLE_ARN_TEMPLATE": f"arn:aws:iam::{{account}}:role/{RESPONDER_ROLE}",
        "CORDON_TEST_AWS_QUIET_ACCOUNT_ID": QUIET_ACCOUNT_ID,
        "CORDON_TEST_AWS_QUIET_ADMIN_KEY_ID": quiet_key.access_key_id,
        "CORDON_TEST_AWS_QUIET_ADMIN_SECRET": quiet_key.secret_access_key,
    }


class RefuseMotoApi:
    """Refuse moto's unauthenticated control endpoints (reset, reset-auth, state); keep
    each request's body for Patch 7."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        # Patch 7: keep the request body as received for the signature check.
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        _raw_request_body.value = body
        # Patch 2/8: a JSON-protocol request names its operation in X-Amz-Target.
        _request_is_json.value = "HTTP_X_AMZ_TARGET" in environ
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
