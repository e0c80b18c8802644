#!/usr/bin/env bash
# Regenerates the TPM test vectors in this folder with a software TPM, so `cargo test` needs none.
#
# Needs (installs nothing itself):   apt-get install -y swtpm swtpm-tools tpm2-tools xxd jq
# Run from anywhere:                 bash tests/vectors/tpm/make.sh
#
# What it writes, per attestation key (folder ecc-p256, ecc-p384, rsa-rsassa, rsa-pss):
#   ak.pub          TPM2B_PUBLIC as `tpm2_createak -u` writes it (the AK is created under the EK,
#                   so resetCount/restartCount are not obfuscated in quotes)
#   quote.msg       TPMS_ATTEST from `tpm2_quote -m`
#   quote.sig       TPMT_SIGNATURE from `tpm2_quote -s`
#   pcrs.json       the quoted PCR values as SPEC's map {"sha256": {"0": "hex", ...}}
#   nonce.hex       the 32-byte qualifying data, hex
# ecc-p256 also has quote2.* (a later quote by the same AK, with its own nonce) for the
# "older quote than the last one seen" checks, and pcr-policy.json (every quoted PCR pinned to the value
# quoted). Nonces are fixed so the files are reproducible in shape; clock values and signatures are
# not (a TPM's clock runs and ECDSA is randomised).
set -euo pipefail

OUT="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
PORT=$((20000 + RANDOM % 20000))
PCRS="sha256:0,1,2,3,7"

cleanup() {
    if [[ -f "$WORK/swtpm.pid" ]]; then kill "$(cat "$WORK/swtpm.pid")" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/state"
swtpm socket --tpm2 --tpmstate dir="$WORK/state" \
    --server type=tcp,port=$PORT,bindaddr=127.0.0.1 \
    --ctrl type=tcp,port=$((PORT + 1)),bindaddr=127.0.0.1 \
    --flags not-need-init,startup-clear --daemon --pid file="$WORK/swtpm.pid"
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$PORT"

# No resource manager in front of swtpm: flush transient objects and sessions after each command.
flush() { tpm2_flushcontext -t >/dev/null; tpm2_flushcontext -s >/dev/null; }

# Give the quoted PCRs recognisable, non-zero values.
tpm2_pcrextend 0:sha256=$(printf 'mandate-pcr0' | sha256sum | cut -d' ' -f1)
tpm2_pcrextend 7:sha256=$(printf 'mandate-pcr7' | sha256sum | cut -d' ' -f1)

cd "$WORK"
tpm2_createek -c 0x81010001 -G rsa -u ek.pub >/dev/null
flush

# pcrs.json from the raw values `tpm2_quote -F values` writes (32 bytes each, selection order).
pcr_json() {
    local raw="$1" out="$2" i=0 json="{}"
    for v in $(xxd -p -c 32 "$raw"); do
        local idx
        idx=$(echo "0 1 2 3 7" | cut -d' ' -f$((i + 1)))
        json=$(jq -c --arg k "$idx" --arg v "$v" '.[$k] = $v' <<<"$json")
        i=$((i + 1))
    done
    jq '{sha256: .}' <<<"$json" >"$out"
}

# make_ak NAME -G -g -s: an AK under the EK, persisted so contexts survive flushing.
make_ak() {
    local name="$1" alg="$2" hash="$3" scheme="$4" handle="$5"
    mkdir -p "$OUT/$name"
    tpm2_createak -C 0x81010001 -c ak.ctx -G "$alg" -g "$hash" -s "$scheme" \
        -u "$OUT/$name/ak.pub" -n ak.name -r ak.priv >/dev/null
    flush
    tpm2_evictcontrol -C o -c ak.ctx "$handle" >/dev/null
    flush
}

# quote NAME HANDLE HASH NONCEHEX PREFIX [SCHEME]: the key's scheme unless SCHEME is given.
quote() {
    local name="$1" handle="$2" hash="$3" nonce="$4" prefix="$5" scheme=()
    if [[ $# -ge 6 ]]; then scheme=(--scheme "$6"); fi
    tpm2_quote -c "$handle" -l "$PCRS" -q "$nonce" -g "$hash" "${scheme[@]}" \
        -m "$OUT/$name/$prefix.msg" -s "$OUT/$name/$prefix.sig" -o pcrs.bin -F values >/dev/null
    flush
    local suffix="${prefix#quote}"
    pcr_json pcrs.bin "$OUT/$name/pcrs$suffix.json"
    echo "$nonce" >"$OUT/$name/nonce$suffix.hex"
}

N1=$(printf '%064x' 1 | sed 's/^0/a/')   # fixed 32-byte nonces
N2=$(printf '%064x' 2 | sed 's/^0/b/')
N3=$(printf '%064x' 3 | sed 's/^0/c/')
N4=$(printf '%064x' 4 | sed 's/^0/d/')
N5=$(printf '%064x' 5 | sed 's/^0/e/')

make_ak ecc-p256 ecc sha256 ecdsa 0x81010010
quote ecc-p256 0x81010010 sha256 "$N1" quote
sleep 1
quote ecc-p256 0x81010010 sha256 "$N2" quote2

make_ak ecc-p384 ecc384 sha384 ecdsa 0x81010011
quote ecc-p384 0x81010011 sha384 "$N3" quote

make_ak rsa-rsassa rsa sha256 rsassa 0x81010012
quote rsa-rsassa 0x81010012 sha256 "$N4" quote

make_ak rsa-pss rsa sha256 rsapss 0x81010013
quote rsa-pss 0x81010013 sha256 "$N5" quote rsapss

cp "$OUT/ecc-p256/pcrs.json" "$OUT/ecc-p256/pcr-policy.json"

chmod 644 "$OUT"/*/*
ls -l "$OUT"/*/
