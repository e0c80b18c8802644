//! PCR values as an agent posts them and PCR policies as an operator writes them, both in SPEC's
//! JSON shape `{"sha256": {"0": "hex", ...}}` (bank name → PCR index → value). A policy may give
//! one allowed value or a list of them per PCR, and may be wrapped as `{"pcrs": {...}}` so the
//! body of an `/attest` request can serve as a policy file.

use std::collections::BTreeMap;

use serde_json::Value;

use super::parse::{HashAlg, PcrSelection};

/// PCR indices a selection can name (sizeofSelect ≤ 4).
const MAX_PCR: u8 = 31;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PcrError {
    #[error("PCRs must be an object of banks (\"sha256\") to objects of PCR index to hex value")]
    Shape,
    #[error("unknown PCR bank")]
    UnknownBank,
    #[error("a PCR index is not a number from 0 to 31 written without leading zeros")]
    Index,
    #[error("a PCR value is not hex of the bank's digest size")]
    Value,
    #[error("a PCR policy must name at least one PCR")]
    EmptyPolicy,
}

/// One bank-to-index-to-T map, parsed from JSON.
type Banks<T> = BTreeMap<HashAlg, BTreeMap<u8, T>>;

fn parse_banks<T>(
    v: &Value,
    mut value: impl FnMut(HashAlg, &Value) -> Result<T, PcrError>,
) -> Result<Banks<T>, PcrError> {
    let obj = v.as_object().ok_or(PcrError::Shape)?;
    let mut out = BTreeMap::new();
    for (bank, pcrs) in obj {
        let hash = HashAlg::from_name(bank).ok_or(PcrError::UnknownBank)?;
        let mut map = BTreeMap::new();
        for (idx, val) in pcrs.as_object().ok_or(PcrError::Shape)? {
            // Canonical decimal only, so "7" and "07" cannot name one PCR twice.
            let i: u8 = idx.parse().map_err(|_| PcrError::Index)?;
            if i > MAX_PCR || i.to_string() != *idx {
                return Err(PcrError::Index);
            }
            map.insert(i, value(hash, val)?);
        }
        out.insert(hash, map);
    }
    Ok(out)
}

fn hex_value(hash: HashAlg, v: &Value) -> Result<Vec<u8>, PcrError> {
    let bytes = hex::decode(v.as_str().ok_or(PcrError::Value)?).map_err(|_| PcrError::Value)?;
    if bytes.len() != hash.size() {
        return Err(PcrError::Value);
    }
    Ok(bytes)
}

/// The PCR values posted with a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrValues(Banks<Vec<u8>>);

impl PcrValues {
    pub fn from_json(v: &Value) -> Result<Self, PcrError> {
        Ok(Self(parse_banks(v, hex_value)?))
    }

    /// The values concatenated in the order of `sel` (banks as listed, indices ascending), the
    /// preimage of pcrDigest; `None` unless exactly the selected PCRs were posted.
    pub fn concat_for(&self, sel: &PcrSelection) -> Option<Vec<u8>> {
        let posted: usize = self.0.values().map(BTreeMap::len).sum();
        let selected: usize = sel.banks.iter().map(|(_, p)| p.len()).sum();
        if posted != selected {
            return None;
        }
        let mut out = Vec::new();
        for (hash, pcrs) in &sel.banks {
            let bank = self.0.get(hash)?;
            for i in pcrs {
                out.extend_from_slice(bank.get(i)?);
            }
        }
        Some(out)
    }

    pub fn get(&self, hash: HashAlg, pcr: u8) -> Option<&[u8]> {
        self.0.get(&hash)?.get(&pcr).map(Vec::as_slice)
    }
}

/// Which PCRs a quote must select, and the values each may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrPolicy(Banks<Vec<Vec<u8>>>);

/// How a quote failed a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMismatch {
    /// The quote selects other PCRs than the policy names (CVE-2024-29039 class: a quote that
    /// leaves a PCR out must not pass a policy about it).
    Selection,
    /// This PCR has a value the policy does not allow.
    Value(HashAlg, u8),
}

impl PcrPolicy {
    pub fn from_json(v: &Value) -> Result<Self, PcrError> {
        let v = v.get("pcrs").unwrap_or(v);
        let banks = parse_banks(v, |hash, val| match val {
            Value::Array(list) if !list.is_empty() => {
                list.iter().map(|x| hex_value(hash, x)).collect()
            }
            Value::String(_) => Ok(vec![hex_value(hash, val)?]),
            _ => Err(PcrError::Value),
        })?;
        if banks.values().all(BTreeMap::is_empty) {
            return Err(PcrError::EmptyPolicy);
        }
        Ok(Self(banks))
    }

    /// The quoted selection must be exactly the policy's PCRs, and each value an allowed one.
    pub fn check(&self, sel: &PcrSelection, values: &PcrValues) -> Result<(), PolicyMismatch> {
        let quoted: BTreeMap<HashAlg, &[u8]> = sel
            .banks
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(h, p)| (*h, p.as_slice()))
            .collect();
        let wanted: BTreeMap<HashAlg, Vec<u8>> = self
            .0
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(h, p)| (*h, p.keys().copied().collect()))
            .collect();
        if quoted.len() != wanted.len()
            || wanted
                .iter()
                .any(|(h, w)| quoted.get(h).copied() != Some(w.as_slice()))
        {
            return Err(PolicyMismatch::Selection);
        }
        for (hash, pcrs) in &self.0 {
            for (pcr, allowed) in pcrs {
                let v = values
                    .get(*hash, *pcr)
                    .ok_or(PolicyMismatch::Value(*hash, *pcr))?;
                if !allowed.iter().any(|a| a.as_slice() == v) {
                    return Err(PolicyMismatch::Value(*hash, *pcr));
                }
            }
        }
        Ok(())
    }

    /// The policy in SPEC's shape, one value or a list per PCR: what the agent token carries.
    pub fn to_json(&self) -> Value {
        let mut banks = serde_json::Map::new();
        for (hash, pcrs) in &self.0 {
            let mut m = serde_json::Map::new();
            for (pcr, allowed) in pcrs {
                let v = match allowed.as_slice() {
                    [one] => Value::String(hex::encode(one)),
                    many => {
                        Value::Array(many.iter().map(|a| Value::String(hex::encode(a))).collect())
                    }
                };
                m.insert(pcr.to_string(), v);
            }
            banks.insert(hash.name().to_string(), Value::Object(m));
        }
        Value::Object(banks)
    }
}
