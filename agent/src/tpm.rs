//! The TPM path (feature `tpm`): an attestation key (AK) made under the endorsement key (EK), so
//! the TPM's reset and restart counters in quotes are not obfuscated; quotes over the server's
//! nonce; zero-touch enrollment by the EK certificate and TPM2_ActivateCredential.
//!
//! A tss-esapi `Context` is not `Send`: one thread owns it and runs the TPM work sent to it, so
//! [`TpmAttester`] can live in an async program. The AK's private part (wrapped by the EK, useless
//! outside this TPM) and public part are kept in `state_dir/ak.json` and loaded on later runs.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tss_esapi::Context;
use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, ak, ek};
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, KeyHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::interface_types::session_handles::PolicySession;
use tss_esapi::structures::{
    Data, EncryptedSecret, IdObject, PcrSelectionList, PcrSlot, Private, Public, SignatureScheme,
    SymmetricDefinition,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};

use sha2::{Digest as _, Sha256};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::interface_types::algorithm::PublicAlgorithm;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::structures::{
    Digest, EccParameter, EccPoint, EccScheme, HashScheme, HashcheckTicket, PublicBuilder,
    PublicEccParametersBuilder, Signature,
};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;

use crate::Error;
use crate::client::Client;
use crate::session::Attester;

/// Which endorsement key to use: the ones EK certificates are issued for (TCG EK Credential
/// Profile templates L-1 RSA-2048, L-2 ECC P-256, H-3 ECC P-384).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EkKind {
    Rsa2048,
    EccP256,
    EccP384,
}

impl EkKind {
    fn selection(self) -> AsymmetricAlgorithmSelection {
        match self {
            Self::Rsa2048 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            Self::EccP256 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
            Self::EccP384 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP384),
        }
    }

    /// The low-range templates have no userWithAuth: using the EK needs PolicySecret(endorsement).
    fn needs_policy(self) -> bool {
        matches!(self, Self::Rsa2048 | Self::EccP256)
    }
}

impl FromStr for EkKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "rsa" | "rsa2048" => Ok(Self::Rsa2048),
            "ecc" | "ecc256" | "p256" => Ok(Self::EccP256),
            "ecc384" | "p384" => Ok(Self::EccP384),
            _ => Err(Error::Config(format!(
                "EK `{s}`: use rsa2048, p256 or p384"
            ))),
        }
    }
}

/// Where the TPM is and what to quote.
#[derive(Debug, Clone)]
pub struct TpmConfig {
    /// A TCTI string: `swtpm:host=127.0.0.1,port=2321`, `device:/dev/tpmrm0`, ...
    pub tcti: String,
    /// Holds `ak.json`.
    pub state_dir: PathBuf,
    pub ek: EkKind,
    /// SHA-256 PCRs to quote, as the agent's PCR policy expects.
    pub pcrs: Vec<u8>,
}

/// A TPM2B (u16 size, then the bytes).
fn tpm2b(body: &[u8]) -> Result<Vec<u8>, Error> {
    let len = u16::try_from(body.len()).map_err(|_| Error::Tpm("structure too large".into()))?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(body);
    Ok(out)
}

fn tpm_err(what: &str) -> impl Fn(tss_esapi::Error) -> Error + '_ {
    move |e| Error::Tpm(format!("{what}: {e}"))
}

/// The TPM, owned by one thread.
struct Tpm {
    ctx: Context,
    ek_kind: EkKind,
    ek: KeyHandle,
    ak: KeyHandle,
    /// TPM2B_PUBLIC of the AK.
    ak_public: Vec<u8>,
    pcrs: Vec<u8>,
    /// The DPoP key, once made: its handle, TPM2B_PUBLIC, JWK and thumbprint.
    dpop: Option<TpmDpop>,
}

struct TpmDpop {
    handle: KeyHandle,
    public: Vec<u8>,
    jwk: Value,
    jkt: String,
}

impl Tpm {
    fn open(cfg: &TpmConfig) -> Result<Self, Error> {
        let tcti = TctiNameConf::from_str(&cfg.tcti)
            .map_err(|e| Error::Config(format!("TCTI `{}`: {e}", cfg.tcti)))?;
        let mut ctx = Context::new(tcti).map_err(tpm_err("cannot open the TPM"))?;
        let ek = ek::create_ek_object_2(&mut ctx, cfg.ek.selection(), None)
            .map_err(tpm_err("creating the EK"))?;
        let (private, public) = load_or_create_ak(&mut ctx, ek, &cfg.state_dir)?;
        let ak_public = tpm2b(&public.marshall().map_err(tpm_err("AK public"))?)?;
        let ak =
            ak::load_ak(&mut ctx, ek, None, private, public).map_err(tpm_err("loading the AK"))?;
        Ok(Self {
            ctx,
            ek_kind: cfg.ek,
            ek,
            ak,
            ak_public,
            pcrs: cfg.pcrs.clone(),
            dpop: None,
        })
    }

    /// The DPoP key: a P-256 ECDSA SHA-256 signing key the TPM derives in the owner hierarchy
    /// (a primary key, so the same `label` gives the same key after a restart, and nothing
    /// needs saving) with the attributes the server requires of a TPM-held key: fixedTPM,
    /// fixedParent, sensitiveDataOrigin, sign, not restricted, not decrypt.
    fn dpop_key(&mut self, label: &str) -> Result<&TpmDpop, Error> {
        if self.dpop.is_none() {
            let attributes = ObjectAttributesBuilder::new()
                .with_fixed_tpm(true)
                .with_fixed_parent(true)
                .with_sensitive_data_origin(true)
                .with_user_with_auth(true)
                .with_sign_encrypt(true)
                .with_decrypt(false)
                .with_restricted(false)
                .build()
                .map_err(tpm_err("DPoP key attributes"))?;
            // The template's `unique` makes one key per label (agent) on a shared TPM.
            let seed = Sha256::digest(format!("mandate dpop {label}").as_bytes()).to_vec();
            let unique = EccPoint::new(
                EccParameter::try_from(seed.clone()).map_err(tpm_err("DPoP key unique"))?,
                EccParameter::try_from(seed).map_err(tpm_err("DPoP key unique"))?,
            );
            let template = PublicBuilder::new()
                .with_public_algorithm(PublicAlgorithm::Ecc)
                .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
                .with_object_attributes(attributes)
                .with_ecc_parameters(
                    PublicEccParametersBuilder::new_unrestricted_signing_key(
                        EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
                        EccCurve::NistP256,
                    )
                    .build()
                    .map_err(tpm_err("DPoP key parameters"))?,
                )
                .with_ecc_unique_identifier(unique)
                .build()
                .map_err(tpm_err("DPoP key template"))?;
            let created = self
                .ctx
                .execute_with_nullauth_session(|c| {
                    c.create_primary(Hierarchy::Owner, template, None, None, None, None)
                })
                .map_err(tpm_err("creating the DPoP key"))?;
            let public = tpm2b(
                &created
                    .out_public
                    .marshall()
                    .map_err(tpm_err("DPoP public"))?,
            )?;
            let Public::Ecc { unique, .. } = &created.out_public else {
                return Err(Error::Tpm("the DPoP key is not an ECC key".into()));
            };
            let (jwk, jkt) = crate::dpop::p256_jwk(unique.x().value(), unique.y().value());
            self.dpop = Some(TpmDpop {
                handle: created.key_handle,
                public,
                jwk,
                jkt,
            });
        }
        self.dpop
            .as_ref()
            .ok_or_else(|| Error::Tpm("the DPoP key was not made".into()))
    }

    /// TPM2_Certify of the DPoP key by the AK: what `/attest` takes as `dpop_key`.
    fn dpop_certify(&mut self, label: &str) -> Result<Value, Error> {
        let (key, public) = {
            let k = self.dpop_key(label)?;
            (k.handle, k.public.clone())
        };
        let ak = self.ak;
        let (attest, signature) = self
            .ctx
            .execute_with_sessions(
                (
                    Some(AuthSession::Password),
                    Some(AuthSession::Password),
                    None,
                ),
                |c| c.certify(key.into(), ak, Data::default(), SignatureScheme::Null),
            )
            .map_err(tpm_err("TPM2_Certify"))?;
        Ok(json!({
            "public": STANDARD.encode(public),
            "certify": STANDARD.encode(attest.marshall().map_err(tpm_err("TPMS_ATTEST"))?),
            "signature": STANDARD.encode(signature.marshall().map_err(tpm_err("TPMT_SIGNATURE"))?),
        }))
    }

    /// ES256 over `message` by the DPoP key (TPM2_Sign of its SHA-256): JWS's r‖s.
    fn dpop_sign(&mut self, label: &str, message: &[u8]) -> Result<Vec<u8>, Error> {
        let key = self.dpop_key(label)?.handle;
        let digest =
            Digest::try_from(Sha256::digest(message).to_vec()).map_err(tpm_err("DPoP digest"))?;
        let validation = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: Default::default(),
        })
        .map_err(tpm_err("hashcheck ticket"))?;
        let scheme = SignatureScheme::EcDsa {
            hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
        };
        let sig = self
            .ctx
            .execute_with_nullauth_session(|c| c.sign(key, digest, scheme, validation))
            .map_err(tpm_err("TPM2_Sign"))?;
        let Signature::EcDsa(ecc) = sig else {
            return Err(Error::Tpm("TPM2_Sign gave no ECDSA signature".into()));
        };
        let mut out = vec![0u8; 64];
        for (part, at) in [
            (ecc.signature_r().value(), 0usize),
            (ecc.signature_s().value(), 32),
        ] {
            let start = (at + 32)
                .checked_sub(part.len())
                .filter(|s| *s >= at)
                .ok_or_else(|| Error::Tpm("ECDSA signature part too long".into()))?;
            out.get_mut(start..at + 32)
                .ok_or_else(|| Error::Tpm("ECDSA signature part too long".into()))?
                .copy_from_slice(part);
        }
        Ok(out)
    }

    /// TPM2B_PUBLIC of the EK.
    fn ek_public(&mut self) -> Result<Vec<u8>, Error> {
        let (public, _, _) = self
            .ctx
            .read_public(self.ek)
            .map_err(tpm_err("reading the EK"))?;
        tpm2b(&public.marshall().map_err(tpm_err("EK public"))?)
    }

    /// The EK certificate from its NV index, trimmed to its DER length (NV areas are padded).
    fn ek_certificate(&mut self) -> Result<Vec<u8>, Error> {
        let raw = ek::retrieve_ek_pubcert(&mut self.ctx, self.ek_kind.selection()).map_err(
            tpm_err("reading the EK certificate (does this TPM have one?)"),
        )?;
        der_prefix(&raw).ok_or_else(|| Error::Tpm("the EK certificate in NV is not DER".into()))
    }

    fn selection(&self) -> Result<PcrSelectionList, Error> {
        let slots = self
            .pcrs
            .iter()
            .map(|p| PcrSlot::try_from(1u32 << u32::from(*p)).map_err(tpm_err("PCR index")))
            .collect::<Result<Vec<_>, _>>()?;
        PcrSelectionList::builder()
            .with_selection(HashingAlgorithm::Sha256, &slots)
            .build()
            .map_err(tpm_err("PCR selection"))
    }

    /// TPM2_Quote over `nonce` and the selected PCRs, with the PCR values read just before.
    fn quote(&mut self, nonce: &[u8]) -> Result<Value, Error> {
        let mut pcrs = serde_json::Map::new();
        // TPM2_PCR_Read answers at most eight digests a call: read one PCR at a time.
        for p in self.pcrs.clone() {
            let one = PcrSelectionList::builder()
                .with_selection(
                    HashingAlgorithm::Sha256,
                    &[PcrSlot::try_from(1u32 << u32::from(p)).map_err(tpm_err("PCR index"))?],
                )
                .build()
                .map_err(tpm_err("PCR selection"))?;
            let (_, _, digests) = self
                .ctx
                .execute_without_session(|c| c.pcr_read(one))
                .map_err(tpm_err("reading PCRs"))?;
            let d = digests
                .value()
                .first()
                .ok_or_else(|| Error::Tpm(format!("PCR {p} was not read")))?;
            pcrs.insert(p.to_string(), Value::String(hex(d.value())));
        }
        let selection = self.selection()?;
        let nonce = Data::try_from(nonce.to_vec()).map_err(tpm_err("nonce"))?;
        let ak = self.ak;
        let (attest, signature) = self
            .ctx
            .execute_with_nullauth_session(|c| c.quote(ak, nonce, SignatureScheme::Null, selection))
            .map_err(tpm_err("TPM2_Quote"))?;
        Ok(json!({
            "quote": STANDARD.encode(attest.marshall().map_err(tpm_err("TPMS_ATTEST"))?),
            "signature": STANDARD.encode(signature.marshall().map_err(tpm_err("TPMT_SIGNATURE"))?),
            "pcrs": { "sha256": pcrs },
        }))
    }

    /// TPM2_ActivateCredential: the secret the server sealed to this EK and the AK's Name.
    fn activate(
        &mut self,
        id_object: Vec<u8>,
        encrypted_secret: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let blob = IdObject::try_from(id_object).map_err(tpm_err("credential_blob"))?;
        let secret =
            EncryptedSecret::try_from(encrypted_secret).map_err(tpm_err("encrypted_secret"))?;
        // The AK (ADMIN role) by its empty auth value over an HMAC session; the EK (USER role)
        // by PolicySecret(endorsement) for the low-range templates, which have no
        // userWithAuth, else by its empty auth too. Sessions are flushed whatever happens.
        let mut sessions = Vec::new();
        let result = self.activate_with(&mut sessions, blob, secret);
        self.ctx.clear_sessions();
        for s in sessions {
            let _ = self.ctx.flush_context(SessionHandle::from(s).into());
        }
        result
    }

    fn session(
        &mut self,
        kind: SessionType,
        started: &mut Vec<AuthSession>,
    ) -> Result<AuthSession, Error> {
        let s = self
            .ctx
            .start_auth_session(
                None,
                None,
                None,
                kind,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(tpm_err("starting a session"))?
            .ok_or_else(|| Error::Tpm("the TPM started no session".into()))?;
        started.push(s);
        let (attrs, mask) = SessionAttributesBuilder::new().build();
        self.ctx
            .tr_sess_set_attributes(s, attrs, mask)
            .map_err(tpm_err("session attributes"))?;
        Ok(s)
    }

    fn activate_with(
        &mut self,
        started: &mut Vec<AuthSession>,
        blob: IdObject,
        secret: EncryptedSecret,
    ) -> Result<Vec<u8>, Error> {
        let ak_session = self.session(SessionType::Hmac, started)?;
        let ek_session = if self.ek_kind.needs_policy() {
            let s = self.session(SessionType::Policy, started)?;
            let policy = PolicySession::try_from(s).map_err(tpm_err("policy session"))?;
            self.ctx
                .execute_with_session(Some(ak_session), |c| {
                    c.policy_secret(
                        policy,
                        AuthHandle::Endorsement,
                        Default::default(),
                        Default::default(),
                        Default::default(),
                        None,
                    )
                })
                .map_err(tpm_err("PolicySecret(endorsement)"))?;
            s
        } else {
            self.session(SessionType::Hmac, started)?
        };
        self.ctx
            .set_sessions((Some(ak_session), Some(ek_session), None));
        self.ctx
            .activate_credential(self.ak, self.ek, blob, secret)
            .map(|d| d.value().to_vec())
            .map_err(tpm_err(
                "TPM2_ActivateCredential (is the challenge for this TPM and this AK?)",
            ))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first DER element of `raw` (a SEQUENCE with a definite length), without what follows.
fn der_prefix(raw: &[u8]) -> Option<Vec<u8>> {
    let (&tag, rest) = raw.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = rest
            .get(..n)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    raw.get(..header.checked_add(len)?).map(<[u8]>::to_vec)
}

/// The AK from `state_dir/ak.json`, or a new one (ECDSA P-256, SHA-256) saved there.
fn load_or_create_ak(
    ctx: &mut Context,
    ek: KeyHandle,
    dir: &Path,
) -> Result<(Private, Public), Error> {
    let path = dir.join("ak.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let field = |k: &str| {
            v[k].as_str()
                .and_then(|s| STANDARD.decode(s).ok())
                .ok_or_else(|| {
                    Error::Config(format!("{}: `{k}` missing or not base64", path.display()))
                })
        };
        let private = Private::try_from(field("private")?).map_err(tpm_err("AK private"))?;
        let public = Public::unmarshall(&field("public")?).map_err(tpm_err("AK public"))?;
        return Ok((private, public));
    }
    let created = ak::create_ak_2(
        ctx,
        ek,
        HashingAlgorithm::Sha256,
        AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
        SignatureSchemeAlgorithm::EcDsa,
        None,
        None,
    )
    .map_err(tpm_err("creating the AK"))?;
    let public_bytes = created
        .out_public
        .marshall()
        .map_err(tpm_err("AK public"))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
    let doc = json!({
        "private": STANDARD.encode(created.out_private.value()),
        "public": STANDARD.encode(&public_bytes),
    });
    std::fs::write(&path, doc.to_string())
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok((created.out_private, created.out_public))
}

type Job = Box<dyn FnOnce(&mut Tpm) + Send>;

/// A TPM-backed [`Attester`]: quotes with its AK, enrolls by credential activation.
pub struct TpmAttester {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TpmAttester {
    /// Closes the job queue and waits for the thread to flush its TPM objects, so the TPM is
    /// left clean before whoever dropped this moves on.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TpmAttester {
    /// Opens the TPM on its own thread, creates the EK and loads (or creates) the AK.
    pub fn open(cfg: TpmConfig) -> Result<Self, Error> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tpm".into())
            .spawn(move || {
                let mut tpm = match Tpm::open(&cfg) {
                    Ok(t) => {
                        let _ = ready_tx.send(Ok(()));
                        t
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    job(&mut tpm);
                }
            })
            .map_err(|e| Error::Tpm(format!("cannot start the TPM thread: {e}")))?;
        ready_rx
            .recv()
            .map_err(|_| Error::Tpm("the TPM thread stopped".into()))??;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Tpm) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .as_ref()
            .ok_or_else(|| Error::Tpm("the TPM thread stopped".into()))?
            .send(Box::new(move |tpm| {
                let _ = tx.send(f(tpm));
            }))
            .map_err(|_| Error::Tpm("the TPM thread stopped".into()))?;
        rx.await
            .map_err(|_| Error::Tpm("the TPM thread stopped".into()))?
    }

    /// TPM2B_PUBLIC of the AK (what `mandate agents enroll --ak-public` takes).
    pub async fn ak_public(&self) -> Result<Vec<u8>, Error> {
        self.run(|t| Ok(t.ak_public.clone())).await
    }

    /// TPM2B_PUBLIC of the EK.
    pub async fn ek_public(&self) -> Result<Vec<u8>, Error> {
        self.run(Tpm::ek_public).await
    }

    /// The EK certificate (DER) from the TPM's NV, if the manufacturer put one there.
    pub async fn ek_certificate(&self) -> Result<Vec<u8>, Error> {
        self.run(Tpm::ek_certificate).await
    }

    /// Zero-touch enrollment as `agent`: EK certificate, EK and AK to `/attest/enroll`, the
    /// challenge through TPM2_ActivateCredential, the secret to `/attest/enroll/activate`.
    /// `ek_chain` holds the CA certificates (DER) between the EK certificate and the server's
    /// EK root, nearest first ([`crate::pem_certificates`] reads them from PEM). Without an EK
    /// certificate in the TPM, the EK must be on the server's allowlist.
    pub async fn enroll(
        &self,
        client: &Client,
        agent: &str,
        ek_chain: &[Vec<u8>],
    ) -> Result<Value, Error> {
        let (ek_public, cert, ak_public) = self
            .run(|t| Ok((t.ek_public()?, t.ek_certificate().ok(), t.ak_public.clone())))
            .await?;
        let challenge = client
            .enroll(agent, &ek_public, cert.as_deref(), ek_chain, &ak_public)
            .await?;
        let blob = STANDARD
            .decode(&challenge.credential_blob)
            .map_err(|_| Error::Protocol("credential_blob is not base64".into()))?;
        let secret = STANDARD
            .decode(&challenge.encrypted_secret)
            .map_err(|_| Error::Protocol("encrypted_secret is not base64".into()))?;
        let recovered = self.run(move |t| t.activate(blob, secret)).await?;
        client.activate(&challenge.enrollment_id, &recovered).await
    }
}

impl TpmAttester {
    /// The thumbprint (RFC 7638) of this agent's TPM-held DPoP key, made on first use; `label`
    /// (the agent's name) picks the key, so agents sharing a TPM have their own.
    pub async fn dpop_jkt(&self, label: &str) -> Result<String, Error> {
        let label = label.to_string();
        self.run(move |t| Ok(t.dpop_key(&label)?.jkt.clone())).await
    }

    /// TPM2_Certify of the DPoP key by the AK, as `/attest` takes it beside a quote
    /// (`{"public", "certify", "signature"}`): the server then knows the key cannot leave
    /// this TPM, and tokens bound to it say `dpop_key: tpm`.
    pub async fn dpop_certification(&self, label: &str) -> Result<Value, Error> {
        let label = label.to_string();
        self.run(move |t| t.dpop_certify(&label)).await
    }

    /// A DPoP proof (RFC 9449 §4.2) signed inside the TPM by the DPoP key: for one `htm`
    /// request to `htu`, with `ath` when it carries `access_token` and the server's `nonce`.
    pub async fn dpop_proof(
        &self,
        label: &str,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, Error> {
        let label = label.to_string();
        let jwk = self
            .run({
                let label = label.clone();
                move |t| Ok(t.dpop_key(&label)?.jwk.clone())
            })
            .await?;
        let input = crate::dpop::signing_input(&jwk, htm, htu, access_token, nonce)?;
        let signed = input.clone();
        let sig = self
            .run(move |t| t.dpop_sign(&label, signed.as_bytes()))
            .await?;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

impl Attester for TpmAttester {
    async fn evidence(&self, _agent: &str, _issuer: &str, nonce: &str) -> Result<Value, Error> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let raw = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| Error::Protocol("the server's nonce is not base64url".into()))?;
        self.run(move |t| t.quote(&raw)).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::der_prefix;

    #[test]
    fn ek_certificate_is_cut_at_its_der_length() {
        // SEQUENCE, long-form length 0x0103, then NV padding.
        let mut raw = vec![0x30, 0x82, 0x01, 0x03];
        raw.extend(std::iter::repeat_n(7u8, 0x103));
        raw.extend([0xff; 20]);
        assert_eq!(der_prefix(&raw).map(|d| d.len()), Some(4 + 0x103));
        assert_eq!(
            der_prefix(&[0x30, 0x03, 1, 2, 3, 0, 0]),
            Some(vec![0x30, 0x03, 1, 2, 3])
        );
        assert_eq!(der_prefix(&[0x31, 0x01, 0]), None);
        assert_eq!(der_prefix(&[0x30, 0x82, 0x01]), None);
    }
}
