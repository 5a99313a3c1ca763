"""The containment runbook cordon runs for leaked AKIA keys, as plain boto3 calls.

Same calls, same order per phase as cordon's AWS connector (connectors/aws/src):
identify (sts:GetAccessKeyInfo, iam:GetAccessKeyLastUsed), an evidence snapshot of the
user before each change (GetUser, ListAccessKeys, GetAccessKeyLastUsed per key,
ListUserPolicies, GetUserPolicy per inline policy, ListAttachedUserPolicies,
ListGroupsForUser, GetLoginProfile, ListUserTags), disable (ListAccessKeys,
UpdateAccessKey Inactive), quarantine (GetUserPolicy of the deny-all, GetUser,
ListAttachedUserPolicies, GetLoginProfile, PutUserPolicy deny-all, DeleteLoginProfile)
and verify (with the leaked secret: sts:GetCallerIdentity and iam:GetUser signed with it
must be refused, then the quarantine read back; without it: the snapshot read back).
Used by boto3_runbook.py (sequential) and moto_ceiling.py (a thread pool)."""
import json
import os
import time

import boto3
import botocore.config
from botocore.exceptions import ClientError

QUARANTINE = "cordon-quarantine-deny-all"
DENY_ALL = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "CordonQuarantineDenyAll", "Effect": "Deny", "Action": "*", "Resource": "*"}
        ],
    }
)
# No retries: a failed call must show, not be hidden (cordon retries only throttling).
CFG = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})


class Calls:
    """An admin IAM and STS client that counts its calls."""

    def __init__(self, endpoint, key_id=None, secret=None):
        kw = dict(
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=key_id or os.environ["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=secret or os.environ["AWS_SECRET_ACCESS_KEY"],
            config=CFG,
        )
        self.iam = boto3.client("iam", **kw)
        self.sts = boto3.client("sts", **kw)
        self.endpoint = endpoint
        self.n = 0

    def c(self, client, op, **kw):
        self.n += 1
        return getattr(client, op)(**kw)

    def nosuch(self, client, op, **kw):
        try:
            return self.c(client, op, **kw)
        except ClientError as e:
            if e.response["Error"]["Code"].startswith("NoSuchEntity"):
                return None
            raise


def own_account(k):
    return k.c(k.sts, "get_caller_identity")["Account"]


def identify(k, key_id):
    k.c(k.sts, "get_access_key_info", AccessKeyId=key_id)
    return k.c(k.iam, "get_access_key_last_used", AccessKeyId=key_id)["UserName"]


def snapshot(k, user):
    iam = k.iam
    snap = {"user": k.c(iam, "get_user", UserName=user)["User"]}
    keys = k.c(iam, "list_access_keys", UserName=user)["AccessKeyMetadata"]
    for key in keys:
        key["last_used"] = k.c(iam, "get_access_key_last_used", AccessKeyId=key["AccessKeyId"]).get(
            "AccessKeyLastUsed"
        )
    snap["access_keys"] = keys
    snap["inline"] = {
        n: k.c(iam, "get_user_policy", UserName=user, PolicyName=n)["PolicyDocument"]
        for n in k.c(iam, "list_user_policies", UserName=user)["PolicyNames"]
    }
    snap["attached"] = k.c(iam, "list_attached_user_policies", UserName=user)["AttachedPolicies"]
    snap["groups"] = k.c(iam, "list_groups_for_user", UserName=user)["Groups"]
    lp = k.nosuch(iam, "get_login_profile", UserName=user)
    snap["login_profile"] = lp and lp["LoginProfile"]
    snap["tags"] = k.c(iam, "list_user_tags", UserName=user)["Tags"]
    return snap


def disable(k, user, key_id):
    keys = k.c(k.iam, "list_access_keys", UserName=user)["AccessKeyMetadata"]
    if any(x["AccessKeyId"] == key_id and x["Status"] != "Inactive" for x in keys):
        k.c(k.iam, "update_access_key", UserName=user, AccessKeyId=key_id, Status="Inactive")


def quarantine(k, user):
    doc = k.nosuch(k.iam, "get_user_policy", UserName=user, PolicyName=QUARANTINE)
    if doc is None:
        k.c(k.iam, "get_user", UserName=user)  # the user exists: only the policy is missing
    k.c(k.iam, "list_attached_user_policies", UserName=user)
    lp = k.nosuch(k.iam, "get_login_profile", UserName=user)
    if doc is None:
        k.c(k.iam, "put_user_policy", UserName=user, PolicyName=QUARANTINE, PolicyDocument=DENY_ALL)
    if lp is not None:
        k.nosuch(k.iam, "delete_login_profile", UserName=user)


def key_dead(snap, key_id):
    return any(x["AccessKeyId"] == key_id and x["Status"] == "Inactive" for x in snap["access_keys"])


def user_quarantined(snap):
    return QUARANTINE in snap["inline"] and snap["login_profile"] is None


def probe(k, key_id, secret, op):
    """Sign a harmless read with the leaked key: True when refused."""
    leaked = Calls(k.endpoint, key_id, secret)
    client = leaked.sts if op == "get_caller_identity" else leaked.iam
    k.n += 1
    try:
        getattr(client, op)()
        return False
    except ClientError as e:
        code = e.response["Error"]["Code"]
        return code == "InvalidClientTokenId" or code.startswith("AccessDenied")


def contain_one(k, key_id, secret, evidence, dead=None, t0=None):
    """One leaked key with its secret: identify, disable, quarantine, verify. `dead` gets
    the seconds from `t0` until a call signed with the key was refused (cordon's time to
    dead, the same point)."""
    own_account(k)
    user = identify(k, key_id)
    evidence.append(snapshot(k, user))
    disable(k, user, key_id)
    ok = probe(k, key_id, secret, "get_caller_identity")
    if ok and dead is not None:
        dead.append(time.monotonic() - t0)
    evidence.append(snapshot(k, user))
    quarantine(k, user)
    ok = probe(k, key_id, secret, "get_user") and ok
    return user_quarantined(snapshot(k, user)) and ok


def contain_user(k, keys, evidence):
    """Every leaked key of one user (ceiling load: one user's calls in sequence)."""
    users = {kid: identify(k, kid) for kid in keys}
    user = users[keys[0]]
    for kid in keys:
        evidence.append(snapshot(k, user))
        disable(k, user, kid)
    evidence.append(snapshot(k, user))
    quarantine(k, user)
    ok = all(key_dead(snapshot(k, user), kid) for kid in keys)
    return user_quarantined(snapshot(k, user)) and ok
