#!/usr/bin/env bash
# Regenerates the TPM-held DPoP key vectors in dpop/ with a software TPM, so `cargo test` needs
# none (docs/dpop.md "A key the agent's TPM holds").
#
# Needs (installs nothing itself):   apt-get install -y swtpm swtpm-tools tpm2-tools
# Run from anywhere:                 bash tests/vectors/tpm/make-dpop.sh
#
# What it writes to dpop/:
#   ak.pub            the AK (ECDSA P-256 under the EK), TPM2B_PUBLIC as `tpm2_createak -u` writes it
#   key.pub           a P-256 ECDSA signing key the TPM made and holds (fixedTPM, fixedParent,
#                     sensitiveDataOrigin, userWithAuth, sign; not restricted), TPM2B_PUBLIC
#   certify.msg/.sig  TPM2_Certify of key.pub by the AK: TPMS_ATTEST and TPMT_SIGNATURE
#   loose.pub, loose-certify.msg/.sig   the same for a key without fixedTPM (it could leave
#                     the TPM: the server must refuse it)
#   ak-certify.msg/.sig   the AK certifying itself (a restricted key: refused as a DPoP key)
# Signatures are randomised (ECDSA), so the files differ on every run; their shape does not.
set -euo pipefail

OUT="$(cd "$(dirname "$0")" && pwd)/dpop"
WORK="$(mktemp -d)"
PORT=$((20000 + RANDOM % 20000))

cleanup() {
    if [[ -f "$WORK/swtpm.pid" ]]; then kill "$(cat "$WORK/swtpm.pid")" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/state" "$OUT"
swtpm socket --tpm2 --tpmstate dir="$WORK/state" \
    --server type=tcp,port=$PORT,bindaddr=127.0.0.1 \
    --ctrl type=tcp,port=$((PORT + 1)),bindaddr=127.0.0.1 \
    --flags not-need-init,startup-clear --daemon --pid file="$WORK/swtpm.pid"
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$PORT"
flush() { tpm2_flushcontext -t >/dev/null; tpm2_flushcontext -s >/dev/null; }

cd "$WORK"
tpm2_createek -c 0x81010001 -G rsa -u ek.pub >/dev/null
flush
tpm2_createak -C 0x81010001 -c ak.ctx -G ecc -g sha256 -s ecdsa -u "$OUT/ak.pub" -n ak.name -r ak.priv >/dev/null
flush
tpm2_evictcontrol -C o -c ak.ctx 0x81010010 >/dev/null
flush

# key NAME ATTRIBUTES HANDLE: a primary P-256 ECDSA key in the owner hierarchy, certified by the AK.
key() {
    local name="$1" attrs="$2" handle="$3"
    tpm2_createprimary -C o -g sha256 -G ecc256:ecdsa-sha256 -a "$attrs" -c key.ctx >/dev/null
    flush
    tpm2_evictcontrol -C o -c key.ctx "$handle" >/dev/null
    flush
    tpm2_readpublic -c "$handle" -o "$OUT/$name.pub" >/dev/null
    local prefix="certify"
    if [[ "$name" != key ]]; then prefix="$name-certify"; fi
    tpm2_certify -c "$handle" -C 0x81010010 -g sha256 -o "$OUT/$prefix.msg" -s "$OUT/$prefix.sig" >/dev/null
    flush
}

key key 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign' 0x81010020
key loose 'sensitivedataorigin|userwithauth|sign' 0x81010021
tpm2_certify -c 0x81010010 -C 0x81010010 -g sha256 -o "$OUT/ak-certify.msg" -s "$OUT/ak-certify.sig" >/dev/null
flush

chmod 644 "$OUT"/*
ls -l "$OUT"
