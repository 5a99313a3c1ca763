"""Leaked GitHub tokens for scripts/bench's GitHub run: classic tokens with a valid
checksum (as src/intake/classify.rs builds them: 30 base62 characters, then the CRC32 of
those in 6 base62 digits), planted in the peer's token registry, and checked afterwards
through Prism (GET /user must answer 401 for a revoked token)."""
import concurrent.futures as cf
import json
import random
import urllib.error
import urllib.request
import zlib

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def checksum(random_part):
    n = zlib.crc32(random_part.encode())
    digits = []
    while n > 0:
        digits.append(BASE62[n % 62])
        n //= 62
    return "".join(reversed(digits)).rjust(6, "0")


def classic_token(prefix, seed):
    rng = random.Random(seed)
    part = "".join(rng.choice(BASE62) for _ in range(30))
    return f"{prefix}{part}{checksum(part)}"


def plant(registry, tag, tokens):
    for i in range(0, len(tokens), 500):
        body = json.dumps({"tag": tag, "login": "octo-bot", "scopes": ["repo"], "tokens": tokens[i : i + 500]})
        req = urllib.request.Request(f"{registry}/tokens", body.encode(), {"content-type": "application/json"})
        urllib.request.urlopen(req).read()


def still_live(api, tokens):
    """How many tokens GET /user still accepts (through Prism)."""

    def live(t):
        req = urllib.request.Request(f"{api}/user", headers={"authorization": f"token {t}", "accept": "application/vnd.github+json"})
        try:
            urllib.request.urlopen(req).read()
            return True
        except urllib.error.HTTPError as e:
            if e.code == 401:
                return False
            raise

    with cf.ThreadPoolExecutor(8) as pool:
        return sum(pool.map(live, tokens))
