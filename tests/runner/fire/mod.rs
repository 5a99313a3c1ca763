//! Proof under fire (issue 8): crash at every point against the real peers,
//! injected faults, secret canaries through every input path, the agent
//! under load, and hostile input and concurrent use (issue 21). Figures are
//! in RELIABILITY.md.

mod canary;
mod crash;
mod faults;
mod hostile;
mod load;

use std::io::BufRead;
use std::process::{Child, Command as Std, Stdio};

use crate::peers::peer;

/// peers/faultproxy/proxy.py in front of `upstream`, killed on drop.
pub struct Proxy {
    child: Child,
    pub url: String,
}

impl Proxy {
    pub fn start(upstream: &str, args: &[&str]) -> Proxy {
        let mut child = Std::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/peers/faultproxy/proxy.py"
            ))
            .args(["--listen-port", "0", "--quiet", "--upstream", upstream])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut port = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        assert!(!port.trim().is_empty(), "the fault proxy did not start");
        Proxy {
            child,
            url: format!("http://127.0.0.1:{}", port.trim()),
        }
    }

    /// `GET /__faultproxy/stats`.
    pub fn stats(&self) -> serde_json::Value {
        let out = Std::new("curl")
            .args(["-fsS", &format!("{}/__faultproxy/stats", self.url)])
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Create `n` IAM users `{prefix}-{i}` in moto, one access key each, in one
/// Python process; returns (user, key id, secret) per user.
pub fn seed_keys(prefix: &str, n: usize) -> Vec<(String, String, String)> {
    let py = concat!(env!("CARGO_MANIFEST_DIR"), "/.peers/moto-venv/bin/python");
    let out = Std::new(py)
        .args([
            "-c",
            "import boto3,os,sys\n\
c=boto3.client('iam',endpoint_url=os.environ['E'],aws_access_key_id=os.environ['A'],aws_secret_access_key=os.environ['S'],region_name='us-east-1')\n\
for u in [f'{sys.argv[1]}-{i}' for i in range(int(sys.argv[2]))]: c.create_user(UserName=u); k=c.create_access_key(UserName=u)['AccessKey']; print(u, k['AccessKeyId'], k['SecretAccessKey'])\n",
            prefix,
            &n.to_string(),
        ])
        .env("E", peer("CORDON_TEST_AWS_ENDPOINT"))
        .env("A", peer("CORDON_TEST_AWS_ACCESS_KEY_ID"))
        .env("S", peer("CORDON_TEST_AWS_SECRET_ACCESS_KEY"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace().map(str::to_owned);
            (w.next().unwrap(), w.next().unwrap(), w.next().unwrap())
        })
        .collect()
}

/// Each user's access key statuses, as `{key id: status}`.
pub fn statuses(users: &[&str]) -> std::collections::HashMap<String, String> {
    let py = concat!(env!("CARGO_MANIFEST_DIR"), "/.peers/moto-venv/bin/python");
    let out = Std::new(py)
        .args(["-c", "import boto3,os,sys\n\
c=boto3.client('iam',endpoint_url=os.environ['E'],aws_access_key_id=os.environ['A'],aws_secret_access_key=os.environ['S'],region_name='us-east-1')\n\
print('\\n'.join(f\"{k['AccessKeyId']} {k['Status']}\" for u in sys.argv[1:] for k in c.list_access_keys(UserName=u)['AccessKeyMetadata']))\n"])
        .args(users)
        .env("E", peer("CORDON_TEST_AWS_ENDPOINT"))
        .env("A", peer("CORDON_TEST_AWS_ACCESS_KEY_ID"))
        .env("S", peer("CORDON_TEST_AWS_SECRET_ACCESS_KEY"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect()
}

/// Plant a checksum-valid classic token of `prefix` (`ghp_`, ...) in the
/// GitHub registry under `tag`, owned by `octo-bot`.
pub fn plant_token(prefix: &str, tag: &str, seed: &str) -> String {
    let tok = cordon::intake::classify::make_classic_token(prefix, seed);
    let reg = peer("CORDON_TEST_GITHUB_REGISTRY_URL");
    let st = Std::new("curl")
        .args([
            "-fsS",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            &format!("{reg}/tokens"),
            "-H",
            "content-type: application/json",
            "-d",
        ])
        .arg(
            serde_json::json!({"tag": tag, "login": "octo-bot", "scopes": ["repo"], "token": tok})
                .to_string(),
        )
        .status()
        .unwrap();
    assert!(st.success());
    tok
}

/// The registry's per-endpoint request counters for `tag`.
pub fn registry_counts(tag: &str) -> serde_json::Value {
    let reg = peer("CORDON_TEST_GITHUB_REGISTRY_URL");
    let out = Std::new("curl")
        .args(["-fsS", &format!("{reg}/counts?tag={tag}")])
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// How many `POST /credentials/revoke` requests named a token of `tag`.
pub fn revoke_requests(tag: &str) -> u64 {
    registry_counts(tag)["POST /credentials/revoke"]
        .as_u64()
        .unwrap_or(0)
}

/// Whether the registry (through Prism) still accepts `token` on `GET /user`.
pub fn token_live(token: &str) -> bool {
    let out = Std::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("authorization: token {token}"),
            &format!("{}/user", peer("CORDON_TEST_GITHUB_URL")),
        ])
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    match code.trim() {
        "200" => true,
        "401" => false,
        other => panic!("GET /user answered {other}"),
    }
}

/// A tiny deterministic generator (xorshift64*) for seeded random choices.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The seed for random choices: `CORDON_FIRE_SEED` or the clock; printed so
/// a failure can be replayed.
pub fn seed(what: &str) -> u64 {
    let s = std::env::var("CORDON_FIRE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("{what}: CORDON_FIRE_SEED={s}");
    s
}
