#!/usr/bin/env bash
# Proves mandate's software TPM2_MakeCredential (src/attest/tpm/credential.rs) against a real
# TPM: for each EK type, swtpm creates the EK and an AK under it (tpm2-tools), mandate makes a
# credential for a random secret bound to the AK's Name, and tpm2_activatecredential must give
# the secret back; with a Name one bit off it must fail (TPM_RC_INTEGRITY).
# Needs swtpm, tpm2-tools 5.4 and cargo; run from anywhere.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../../../.." && pwd)"
port="${SWTPM_PORT:-23421}"
work="$(mktemp -d)"
pid=""
stop() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; pid=""; sleep 0.2; fi; }
trap 'stop; rm -rf "$work"' EXIT
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port"
flush() { tpm2_flushcontext -t >/dev/null 2>&1 || true; tpm2_flushcontext -s >/dev/null 2>&1 || true; }

make_cred() {
    (cd "$repo" && MANDATE_CRED_DIR="$1" cargo test -q --lib \
        attest::tpm::ek_tests::swtpm_credential_files -- --ignored --exact >/dev/null 2>&1)
}

activate() { # dir -> writes dir/out; uses the EK policy (PolicySecret(endorsement)) or, for
             # the H-3 template that has userWithAuth, the empty password.
    local d="$1"
    if [ "$2" = policy ]; then
        tpm2_startauthsession --policy-session -S "$d/session.ctx" >/dev/null
        tpm2_policysecret -S "$d/session.ctx" -c e >/dev/null
        tpm2_activatecredential -c "$d/ak.ctx" -C "$d/ek.ctx" -i "$d/cred" -o "$d/out" \
            -P "session:$d/session.ctx" >/dev/null 2>"$d/activate.err"
        local rc=$?
        tpm2_flushcontext "$d/session.ctx" >/dev/null 2>&1 || true
        flush
        return $rc
    fi
    tpm2_activatecredential -c "$d/ak.ctx" -C "$d/ek.ctx" -i "$d/cred" -o "$d/out" \
        >/dev/null 2>"$d/activate.err"
    local rc=$?
    flush
    return $rc
}

check() { # alg auth
    local alg="$1" auth="$2" d="$work/$1"
    mkdir -p "$d/state"
    swtpm socket --tpm2 --tpmstate dir="$d/state" \
        --server type=tcp,port="$port",bindaddr=127.0.0.1 \
        --ctrl type=tcp,port="$((port + 1))",bindaddr=127.0.0.1 \
        --flags not-need-init,startup-clear --daemon --pid file="$d/swtpm.pid"
    pid="$(cat "$d/swtpm.pid")"
    sleep 0.2
    tpm2_createek -G "$alg" -c "$d/ek.ctx" -u "$d/ek.pub" >/dev/null; flush
    tpm2_createak -C "$d/ek.ctx" -c "$d/ak.ctx" -G ecc -g sha256 -s ecdsa \
        -u "$d/ak.pub" -n "$d/ak.name" -r "$d/ak.priv" >/dev/null; flush
    head -c 32 /dev/urandom > "$d/secret"
    make_cred "$d"
    if activate "$d" "$auth" && cmp -s "$d/out" "$d/secret"; then
        echo "$alg: ActivateCredential recovered the secret"
    else
        echo "$alg: FAILED: $(cat "$d/activate.err")"; stop; return 1
    fi
    # The same EK, the Name of an object that is not the AK: the TPM must refuse.
    cp "$d/ak.name" "$d/ak.name.good"
    printf '\x01' | dd of="$d/ak.name" bs=1 seek=33 conv=notrunc status=none
    make_cred "$d"
    cp "$d/ak.name.good" "$d/ak.name"
    if activate "$d" "$auth"; then
        echo "$alg: FAILED: a credential for another Name was activated"; stop; return 1
    else
        echo "$alg: a credential for another Name was refused ($(grep -o '0x[0-9a-fA-F]*' "$d/activate.err" | tail -1))"
    fi
    stop
}

(cd "$repo" && cargo test -q --lib attest::tpm::ek_tests::swtpm_credential_files --no-run 2>/dev/null)
check rsa policy
check ecc policy
check ecc384 password
