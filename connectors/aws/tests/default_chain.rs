//! `AwsConnector::new` with the SDK's default credential chain, against moto. This file
//! holds one test on purpose: it sets process environment variables, which is only safe
//! when no other test runs in the same process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use cordon_aws::{AwsConfig, AwsConnector};
use cordon_connector::ErrorClass;

#[tokio::test]
async fn default_chain_reads_the_environment_and_says_what_to_do_without_credentials() {
    let endpoint = endpoint();
    let key_id = env("CORDON_TEST_AWS_ACCESS_KEY_ID");
    let secret = env("CORDON_TEST_AWS_SECRET_ACCESS_KEY");
    let account = env("CORDON_TEST_AWS_ACCOUNT_ID");
    // Keep the chain local: no instance metadata, no profile files, no container role.
    for (k, v) in [
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/cordon-test/config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/cordon-test/credentials",
        ),
        ("CORDON_AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
    ] {
        std::env::set_var(k, v);
    }
    for k in [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "CORDON_AWS_ROLE_ARN_TEMPLATE",
    ] {
        std::env::remove_var(k);
    }

    // No credentials anywhere: a permanent error that says how to provide them.
    std::env::remove_var("AWS_ACCESS_KEY_ID");
    std::env::remove_var("AWS_SECRET_ACCESS_KEY");
    let config = AwsConfig::from_env().unwrap();
    assert_eq!(config.endpoint_url.as_deref(), Some(endpoint.as_str()));
    let conn = AwsConnector::new(config).await.unwrap();
    let e = conn.own_account().await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(e.message.contains("no usable AWS credentials"), "{e}");

    // Credentials in the environment: the default chain picks them up.
    std::env::set_var("AWS_ACCESS_KEY_ID", &key_id);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &secret);
    let conn = AwsConnector::new(AwsConfig::from_env().unwrap())
        .await
        .unwrap();
    assert_eq!(conn.own_account().await.unwrap(), account);
    let e = format!("{conn:?}");
    assert!(
        !e.contains(&secret),
        "Debug of the connector must not show the secret"
    );
}
