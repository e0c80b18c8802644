#!/usr/bin/env bash
# Regenerates the EK test vectors in this directory from a fresh swtpm (swtpm 0.7.1, tpm2-tools
# 5.4 on Debian bookworm: apt-get install -y swtpm swtpm-tools tpm2-tools openssl).
#
#   root.pem, intermediate.pem   swtpm's local CA (self-signed root <- swtpm-localca)
#   other_root.pem               the root of a second, unrelated local CA
#   ek_rsa.pub, ek_rsa.der       RSA-2048 EK (template L-1): TPM2B_PUBLIC, certificate (NV 0x01c00002)
#   ek_p384.pub, ek_p384.der     ECC P-384 EK (template H-3): TPM2B_PUBLIC, certificate (NV 0x01c00016)
#   ek_p256.pub                  ECC P-256 EK (template L-2); swtpm 0.7.1 makes no certificate for it
#   ak.pub, ak.name              an ECC P-256 AK created under the RSA EK, and its TPM Name
#   ek_rsa.spki.sha256, ek_p384.spki.sha256   SHA-256 of each certified EK's SubjectPublicKeyInfo
#   valid_at                     Unix time one day after the EK certificates' notBefore
#
# Certificates are stored as exact DER (NV areas may be padded; openssl re-encodes and trims).
# The certificates' notBefore is the time this script ran.
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)"
port="${SWTPM_PORT:-23411}"
work="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# swtpm_setup with a CA whose state lives in $1/ca, so nothing touches /var/lib/swtpm-localca.
setup() {
    local dir="$1"
    mkdir -p "$dir/state" "$dir/ca"
    cat > "$dir/swtpm-localca.conf" <<CONF
statedir = $dir/ca
signingkey = $dir/ca/signkey.pem
issuercert = $dir/ca/issuercert.pem
certserial = $dir/ca/certserial
CONF
    cat > "$dir/swtpm_setup.conf" <<CONF
create_certs_tool = /usr/bin/swtpm_localca
create_certs_tool_config = $dir/swtpm-localca.conf
create_certs_tool_options = /etc/swtpm-localca.options
active_pcr_banks = sha256
CONF
    swtpm_setup --tpm2 --tpm-state "$dir/state" --createek --create-ek-cert \
        --create-platform-cert --config "$dir/swtpm_setup.conf" --overwrite >"$dir/setup.log" 2>&1
}

setup "$work/a"
setup "$work/b"
cp "$work/a/ca/swtpm-localca-rootca-cert.pem" "$out/root.pem"
cp "$work/a/ca/issuercert.pem" "$out/intermediate.pem"
cp "$work/b/ca/swtpm-localca-rootca-cert.pem" "$out/other_root.pem"

swtpm socket --tpm2 --tpmstate dir="$work/a/state" \
    --server type=tcp,port="$port",bindaddr=127.0.0.1 \
    --ctrl type=tcp,port="$((port + 1))",bindaddr=127.0.0.1 \
    --flags not-need-init,startup-clear --daemon --pid file="$work/swtpm.pid"
pid="$(cat "$work/swtpm.pid")"
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port"
flush() { tpm2_flushcontext -t >/dev/null; tpm2_flushcontext -s >/dev/null; }

cd "$work"
tpm2_createek -G rsa -c ek_rsa.ctx -u "$out/ek_rsa.pub" >/dev/null; flush
tpm2_createak -C ek_rsa.ctx -c ak.ctx -G ecc -g sha256 -s ecdsa -u "$out/ak.pub" \
    -n "$out/ak.name" -r ak.priv >/dev/null; flush
tpm2_createek -G ecc -c ek_p256.ctx -u "$out/ek_p256.pub" >/dev/null; flush
# tpm2-tools 5.4 builds ecc384 from the high-range H-3 template (SHA-384, AES-256-CFB),
# the EK swtpm_setup persisted at 0x81010016 and certified.
tpm2_createek -G ecc384 -c ek_p384.ctx -u "$out/ek_p384.pub" >/dev/null; flush
tpm2_readpublic -c 0x81010016 -o persisted_p384.pub >/dev/null; flush
cmp persisted_p384.pub "$out/ek_p384.pub"
tpm2_nvread 0x01c00002 -o ek_rsa.nv 2>/dev/null
tpm2_nvread 0x01c00016 -o ek_p384.nv 2>/dev/null
openssl x509 -inform DER -in ek_rsa.nv -outform DER -out "$out/ek_rsa.der"
openssl x509 -inform DER -in ek_p384.nv -outform DER -out "$out/ek_p384.der"
openssl verify -CAfile "$out/root.pem" -untrusted "$out/intermediate.pem" \
    <(openssl x509 -inform DER -in "$out/ek_rsa.der") >/dev/null
not_before="$(openssl x509 -inform DER -in "$out/ek_rsa.der" -noout -startdate | cut -d= -f2)"
echo "$(( $(date -d "$not_before" +%s) + 86400 ))" > "$out/valid_at"
# The pin mandate keeps per agent (and attestation.ek_allowlist holds): SHA-256 of the EK's
# SubjectPublicKeyInfo, as openssl computes it.
for k in rsa p384; do
    openssl x509 -inform DER -in "$out/ek_$k.der" -pubkey -noout | openssl pkey -pubin -outform DER \
        | sha256sum | cut -d' ' -f1 > "$out/ek_$k.spki.sha256"
done
chmod 644 "$out"/*.pub "$out"/*.der "$out"/*.pem "$out/ak.name" "$out/valid_at"
echo "EK vectors written to $out"
