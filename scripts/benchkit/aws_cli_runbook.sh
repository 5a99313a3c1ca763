#!/usr/bin/env bash
# The containment runbook written with the AWS CLI: the calls cordon makes for leaked AKIA
# keys (see runbook.py for the list), one `aws` process per call.
#
#   aws_cli_runbook.sh ENDPOINT SEED.tsv single|many EVIDENCE_DIR
# SEED.tsv: "user<TAB>key_id<TAB>secret" lines. single: the first line's key, with its
# secret (verify signs calls with it); many: every key, in phases like cordon's plan
# (identify all, disable each, quarantine each user, verify by read-back).
# Admin credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; `aws` from PATH.
# Prints {"calls": n, "contained": bool, "dead_first_s", "dead_last_s"}; exits 1 unless
# everything is contained. dead_*: seconds from the start until a key was dead: single, a
# call signed with it refused (the point cordon reports as its time to dead); many, its
# disable call returned (this runbook verifies only at the end), which flatters it.
set -euo pipefail
ep="$1" seed="$2" mode="$3" out="$4"
t0="${EPOCHREALTIME//[!0-9]/}" # microseconds
dead=()
dead_now() { local now="${EPOCHREALTIME//[!0-9]/}"; dead+=($((now - t0))); }
Q=cordon-quarantine-deny-all
DENY='{"Version":"2012-10-17","Statement":[{"Sid":"CordonQuarantineDenyAll","Effect":"Deny","Action":"*","Resource":"*"}]}'
export AWS_RETRY_MODE=standard AWS_MAX_ATTEMPTS=1 AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
count="$out/cli-calls"; : >"$count"
# Counted in a file: most calls run in command substitutions (subshells).
a() { echo >>"$count"; aws --endpoint-url "$ep" --output text "$@"; }
# A call whose NoSuchEntity answer is a fact, not an error: prints NONE then.
a_nosuch() {
  local o rc=0
  o="$(a "$@" 2>"$out/err")" || rc=$?
  if ((rc)); then grep -q NoSuchEntity "$out/err" || { cat "$out/err" >&2; exit 1; }; echo NONE; else echo "$o"; fi
}
identify() { a sts get-access-key-info --access-key-id "$1" >/dev/null
  a iam get-access-key-last-used --access-key-id "$1" --query UserName; }
snapshot() { # user file
  local u="$1" f="$2" k p
  { a iam get-user --user-name "$u"
    for k in $(a iam list-access-keys --user-name "$u" --query 'AccessKeyMetadata[].[AccessKeyId,Status]' | tee "$f.keys" | cut -f1); do
      a iam get-access-key-last-used --access-key-id "$k"; done
    for p in $(a iam list-user-policies --user-name "$u" --query 'PolicyNames[]' | tee "$f.inline"); do
      a iam get-user-policy --user-name "$u" --policy-name "$p"; done
    a iam list-attached-user-policies --user-name "$u"
    a iam list-groups-for-user --user-name "$u"
    a_nosuch iam get-login-profile --user-name "$u" | tee "$f.login"
    a iam list-user-tags --user-name "$u"; } >"$f"
}
disable() { # user key
  local st
  st="$(a iam list-access-keys --user-name "$1" --query 'AccessKeyMetadata[].[AccessKeyId,Status]')"
  if grep -q "^$2[[:space:]]Active" <<<"$st"; then
    a iam update-access-key --user-name "$1" --access-key-id "$2" --status Inactive; fi
}
quarantine() { # user
  local u="$1" doc lp
  doc="$(a_nosuch iam get-user-policy --user-name "$u" --policy-name "$Q")"
  [[ "$doc" == NONE ]] && a iam get-user --user-name "$u" >/dev/null
  a iam list-attached-user-policies --user-name "$u" >/dev/null
  lp="$(a_nosuch iam get-login-profile --user-name "$u")"
  [[ "$doc" == NONE ]] && a iam put-user-policy --user-name "$u" --policy-name "$Q" --policy-document "$DENY"
  [[ "$lp" != NONE ]] && a_nosuch iam delete-login-profile --user-name "$u" >/dev/null
  return 0
}
key_dead() { grep -q "^$2[[:space:]]Inactive" "$1.keys"; }
quarantined() { grep -qx "$Q" "$1.inline" && grep -qx NONE "$1.login"; }
probe() { # key secret service op: refused means dead
  local rc=0
  echo >>"$count"
  AWS_ACCESS_KEY_ID="$1" AWS_SECRET_ACCESS_KEY="$2" aws --endpoint-url "$ep" "$3" "$4" >/dev/null 2>"$out/probe" || rc=$?
  ((rc)) && grep -Eq 'InvalidClientTokenId|AccessDenied' "$out/probe"
}

ok=true
if [[ "$mode" == single ]]; then
  IFS=$'\t' read -r _ key secret <"$seed"
  a sts get-caller-identity --query Account >/dev/null
  user="$(identify "$key")"
  snapshot "$user" "$out/cli-s1"
  disable "$user" "$key"
  if probe "$key" "$secret" sts get-caller-identity; then dead_now; else ok=false; fi
  snapshot "$user" "$out/cli-s2"
  quarantine "$user"
  probe "$key" "$secret" iam get-user || ok=false
  snapshot "$user" "$out/cli-v2"; quarantined "$out/cli-v2" || ok=false
else
  a sts get-caller-identity --query Account >/dev/null
  declare -A owner=(); keys=(); users=()
  while IFS=$'\t' read -r _ key _; do keys+=("$key"); owner[$key]="$(identify "$key")"; done <"$seed"
  for key in "${keys[@]}"; do snapshot "${owner[$key]}" "$out/cli-d-$key"; disable "${owner[$key]}" "$key"; dead_now; done
  mapfile -t users < <(for key in "${keys[@]}"; do echo "${owner[$key]}"; done | awk '!s[$0]++')
  for u in "${users[@]}"; do snapshot "$u" "$out/cli-q-$u"; quarantine "$u"; done
  for key in "${keys[@]}"; do snapshot "${owner[$key]}" "$out/cli-vk-$key"; key_dead "$out/cli-vk-$key" "$key" || ok=false; done
  for u in "${users[@]}"; do snapshot "$u" "$out/cli-vu-$u"; quarantined "$out/cli-vu-$u" || ok=false; done
fi
times=""
if ((${#dead[@]})); then
  first="${dead[0]}" last="${dead[0]}"
  for d in "${dead[@]}"; do
    if ((d < first)); then first=$d; fi
    if ((d > last)); then last=$d; fi
  done
  times="$(printf ', "dead_first_s": %d.%06d, "dead_last_s": %d.%06d' \
    $((first / 1000000)) $((first % 1000000)) $((last / 1000000)) $((last % 1000000)))"
fi
echo "{\"calls\": $(wc -l <"$count"), \"contained\": $ok$times}"
$ok
