"""Seed moto with a user whose access key has "leaked": prints KEY=VALUE lines.

Runs with the moto venv's boto3 and the admin credentials printed by
peers/moto/start. Used by scripts/try (and benchmarks)."""
import os
import sys
import uuid

import boto3

iam = boto3.client(
    "iam",
    endpoint_url=os.environ["CORDON_TEST_AWS_ENDPOINT"],
    aws_access_key_id=os.environ["CORDON_TEST_AWS_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["CORDON_TEST_AWS_SECRET_ACCESS_KEY"],
    region_name="us-east-1",
)
user = sys.argv[1] if len(sys.argv) > 1 else f"deploy-bot-{uuid.uuid4().hex[:6]}"
iam.create_user(UserName=user, Tags=[{"Key": "environment", "Value": "production"}])
iam.attach_user_policy(UserName=user, PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
iam.create_login_profile(UserName=user, Password="Demo-password-1!", PasswordResetRequired=False)
leaked = iam.create_access_key(UserName=user)["AccessKey"]
spare = iam.create_access_key(UserName=user)["AccessKey"]
print(f"DEMO_AWS_USER={user}")
print(f"DEMO_AWS_KEY_ID={leaked['AccessKeyId']}")
print(f"DEMO_AWS_SECRET={leaked['SecretAccessKey']}")
print(f"DEMO_AWS_SPARE_KEY_ID={spare['AccessKeyId']}")
