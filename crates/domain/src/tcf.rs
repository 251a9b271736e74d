//! IAB TCF v2.2 TC strings: decoding the core segment (base64url, bit-packed) into purpose
//! consents, vendor consents and publisher restrictions, with the checks Candor requires
//! (version 2, TCF policy version 4 or higher, service-specific). Pure.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ErrorCode;

/// Why a TC string was refused; each has a code that says which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TcfError {
    /// Not base64url.
    #[error("the TC string is not base64url")]
    Encoding,
    /// Ends before a field.
    #[error("the TC string ends before its {0} field")]
    Truncated(&'static str),
    /// Not a version 2 string.
    #[error("the TC string has version {0}; only version 2 is accepted")]
    Version(u8),
    /// TCF policy version below 4 (TCF v2.2).
    #[error("the TC string has TCF policy version {0}; version 4 (TCF v2.2) or higher is required")]
    PolicyVersion(u8),
    /// Not service-specific.
    #[error("the TC string is not service-specific (global consent is not accepted)")]
    NotServiceSpecific,
    /// A vendor range is empty or reversed (end before start), or names vendor 0.
    #[error(
        "the TC string's {0} field has a vendor range that ends before it starts or names vendor 0"
    )]
    VendorRange(&'static str),
    /// A vendor id above the string's own MaxVendorId.
    #[error("the TC string's {field} field names vendor {vendor}, above its MaxVendorId {max}")]
    VendorAboveMax {
        /// The field.
        field: &'static str,
        /// The vendor named.
        vendor: u16,
        /// The field's MaxVendorId.
        max: u16,
    },
}

impl TcfError {
    /// The code from the error table that names the failed check.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Encoding => ErrorCode::TcfEncoding,
            Self::Truncated(_) => ErrorCode::TcfTruncated,
            Self::Version(_) => ErrorCode::TcfVersion,
            Self::PolicyVersion(_) => ErrorCode::TcfPolicyVersion,
            Self::NotServiceSpecific => ErrorCode::TcfNotServiceSpecific,
            Self::VendorRange(_) => ErrorCode::TcfVendorRange,
            Self::VendorAboveMax { .. } => ErrorCode::TcfVendorAboveMax,
        }
    }
}

/// A publisher restriction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherRestriction {
    /// TCF purpose.
    pub purpose: u8,
    /// 0 = not allowed, 1 = require consent, 2 = require legitimate interest.
    pub restriction_type: u8,
    /// Vendors it applies to.
    pub vendors: VendorSet,
}

/// A set of vendor ids held as sorted, disjoint ranges: a string of 4,095 overlapping ranges
/// of 65,535 vendors each costs a sort, not 268 million insertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VendorSet {
    ranges: Vec<(u16, u16)>,
}

impl VendorSet {
    /// The set of these inclusive ranges (each with start <= end), merged.
    fn from_ranges(mut ranges: Vec<(u16, u16)>) -> Self {
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Self { ranges: merged }
    }

    /// Whether `vendor` is in the set.
    pub fn contains(&self, vendor: &u16) -> bool {
        let i = self.ranges.partition_point(|r| r.1 < *vendor);
        self.ranges.get(i).is_some_and(|r| r.0 <= *vendor)
    }

    /// The vendor ids, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.ranges.iter().flat_map(|&(a, b)| a..=b)
    }
}

impl<const N: usize> From<[u16; N]> for VendorSet {
    fn from(ids: [u16; N]) -> Self {
        Self::from_ranges(ids.iter().map(|&v| (v, v)).collect())
    }
}

/// The decoded core segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcString {
    /// Version (2).
    pub version: u8,
    /// CMP id.
    pub cmp_id: u16,
    /// Consent language (two letters).
    pub consent_language: String,
    /// Global vendor list version.
    pub vendor_list_version: u16,
    /// TCF policy version.
    pub policy_version: u8,
    /// Whether the string is service-specific.
    pub is_service_specific: bool,
    /// Purposes 1..=24 with consent.
    pub purpose_consents: BTreeSet<u8>,
    /// Purposes with legitimate-interest transparency.
    pub purpose_legitimate_interests: BTreeSet<u8>,
    /// Publisher country code.
    pub publisher_cc: String,
    /// Vendors with consent.
    pub vendor_consents: VendorSet,
    /// Vendors with legitimate interest.
    pub vendor_legitimate_interests: VendorSet,
    /// Publisher restrictions.
    pub publisher_restrictions: Vec<PublisherRestriction>,
}

impl TcString {
    /// Whether `vendor` may process for TCF `purpose` on the basis of consent: the purpose and
    /// the vendor have consent and no publisher restriction forbids it.
    pub fn allows(&self, vendor: u16, purpose: u8) -> bool {
        self.purpose_consents.contains(&purpose)
            && self.vendor_consents.contains(&vendor)
            && !self.publisher_restrictions.iter().any(|r| {
                r.purpose == purpose
                    && r.vendors.contains(&vendor)
                    && matches!(r.restriction_type, 0 | 2)
            })
    }
}

struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize, field: &'static str) -> Result<u64, TcfError> {
        if self.at + n > self.bytes.len() * 8 {
            return Err(TcfError::Truncated(field));
        }
        let mut v = 0u64;
        for _ in 0..n {
            let bit = (self.bytes[self.at / 8] >> (7 - self.at % 8)) & 1;
            v = (v << 1) | bit as u64;
            self.at += 1;
        }
        Ok(v)
    }
    fn letters(&mut self, field: &'static str) -> Result<String, TcfError> {
        let a = self.read(6, field)? as u8;
        let b = self.read(6, field)? as u8;
        Ok([(b'A' + a) as char, (b'A' + b) as char].iter().collect())
    }
    /// A range section: NumEntries, then entries of one vendor or a start and an end, each
    /// at least 1, no end before its start, and none above `max` (the field's MaxVendorId;
    /// publisher restrictions have none).
    fn ranges(&mut self, field: &'static str, max: Option<u16>) -> Result<VendorSet, TcfError> {
        let n = self.read(12, field)?;
        let mut ranges = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let is_range = self.read(1, field)? == 1;
            let start = self.read(16, field)? as u16;
            let end = if is_range {
                self.read(16, field)? as u16
            } else {
                start
            };
            if start == 0 || end < start {
                return Err(TcfError::VendorRange(field));
            }
            if let Some(max) = max.filter(|&max| end > max) {
                return Err(TcfError::VendorAboveMax {
                    field,
                    vendor: end,
                    max,
                });
            }
            ranges.push((start, end));
        }
        Ok(VendorSet::from_ranges(ranges))
    }
    fn vendors(&mut self, field: &'static str) -> Result<VendorSet, TcfError> {
        let max = self.read(16, field)? as u16;
        if self.read(1, field)? == 1 {
            return self.ranges(field, Some(max));
        }
        let mut ids = Vec::new();
        for id in 1..=max {
            if self.read(1, field)? == 1 {
                ids.push((id, id));
            }
        }
        Ok(VendorSet::from_ranges(ids))
    }
}

/// Decodes and checks a TC string's core segment.
pub fn decode(tc_string: &str) -> Result<TcString, TcfError> {
    let core = tc_string.trim().split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(core.trim_end_matches('='))
        .map_err(|_| TcfError::Encoding)?;
    let mut b = Bits {
        bytes: &bytes,
        at: 0,
    };
    let version = b.read(6, "Version")? as u8;
    if version != 2 {
        return Err(TcfError::Version(version));
    }
    b.read(36, "Created")?;
    b.read(36, "LastUpdated")?;
    let cmp_id = b.read(12, "CmpId")? as u16;
    b.read(12, "CmpVersion")?;
    b.read(6, "ConsentScreen")?;
    let consent_language = b.letters("ConsentLanguage")?;
    let vendor_list_version = b.read(12, "VendorListVersion")? as u16;
    let policy_version = b.read(6, "TcfPolicyVersion")? as u8;
    if policy_version < 4 {
        return Err(TcfError::PolicyVersion(policy_version));
    }
    let is_service_specific = b.read(1, "IsServiceSpecific")? == 1;
    if !is_service_specific {
        return Err(TcfError::NotServiceSpecific);
    }
    b.read(1, "UseNonStandardTexts")?;
    b.read(12, "SpecialFeatureOptIns")?;
    let mut purpose_consents = BTreeSet::new();
    for p in 1..=24u8 {
        if b.read(1, "PurposesConsent")? == 1 {
            purpose_consents.insert(p);
        }
    }
    let mut purpose_legitimate_interests = BTreeSet::new();
    for p in 1..=24u8 {
        if b.read(1, "PurposesLITransparency")? == 1 {
            purpose_legitimate_interests.insert(p);
        }
    }
    b.read(1, "PurposeOneTreatment")?;
    let publisher_cc = b.letters("PublisherCC")?;
    let vendor_consents = b.vendors("VendorConsents")?;
    let vendor_legitimate_interests = b.vendors("VendorLegitimateInterests")?;
    let n = b.read(12, "NumPubRestrictions")?;
    let mut publisher_restrictions = Vec::new();
    for _ in 0..n {
        let purpose = b.read(6, "PubRestrictionPurpose")? as u8;
        let restriction_type = b.read(2, "RestrictionType")? as u8;
        let vendors = b.ranges("PubRestrictionEntries", None)?;
        publisher_restrictions.push(PublisherRestriction {
            purpose,
            restriction_type,
            vendors,
        });
    }
    Ok(TcString {
        version,
        cmp_id,
        consent_language,
        vendor_list_version,
        policy_version,
        is_service_specific,
        purpose_consents,
        purpose_legitimate_interests,
        publisher_cc,
        vendor_consents,
        vendor_legitimate_interests,
        publisher_restrictions,
    })
}

/// Builds TC strings bit by bit, for tests and tools.
#[derive(Debug, Default)]
pub struct BitWriter {
    bits: Vec<bool>,
}

impl BitWriter {
    /// Appends `n` bits of `value`, most significant first.
    pub fn push(&mut self, n: usize, value: u64) -> &mut Self {
        for i in (0..n).rev() {
            self.bits.push((value >> i) & 1 == 1);
        }
        self
    }
    /// Appends two letters as 6-bit offsets from `A`.
    pub fn letters(&mut self, two: &str) -> &mut Self {
        for c in two.bytes() {
            self.push(6, (c - b'A') as u64);
        }
        self
    }
    /// The base64url text.
    pub fn finish(&self) -> String {
        let mut bytes = vec![0u8; self.bits.len().div_ceil(8)];
        for (i, &bit) in self.bits.iter().enumerate() {
            if bit {
                bytes[i / 8] |= 1 << (7 - i % 8);
            }
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core segment built field by field.
    fn core(
        version: u64,
        policy: u64,
        service_specific: bool,
        purposes: &[u8],
        vendors: &[u16],
        restriction: Option<(u8, u8, u16)>,
    ) -> String {
        let mut w = BitWriter::default();
        w.push(6, version)
            .push(36, 17_000_000_000)
            .push(36, 17_000_000_000)
            .push(12, 7)
            .push(12, 1)
            .push(6, 1);
        w.letters("EN")
            .push(12, 150)
            .push(6, policy)
            .push(1, service_specific as u64)
            .push(1, 0)
            .push(12, 0);
        for p in 1..=24u8 {
            w.push(1, purposes.contains(&p) as u64);
        }
        w.push(24, 0).push(1, 0).letters("FR");
        let max = vendors.iter().copied().max().unwrap_or(0);
        w.push(16, max as u64).push(1, 0);
        for v in 1..=max {
            w.push(1, vendors.contains(&v) as u64);
        }
        w.push(16, 0).push(1, 0); // no legitimate-interest vendors
        match restriction {
            None => {
                w.push(12, 0);
            }
            Some((purpose, kind, vendor)) => {
                w.push(12, 1)
                    .push(6, purpose as u64)
                    .push(2, kind as u64)
                    .push(12, 1)
                    .push(1, 0)
                    .push(16, vendor as u64);
            }
        }
        w.finish()
    }

    #[test]
    fn decodes_strings_built_bit_by_bit() {
        let tc = decode(&core(2, 4, true, &[1, 5, 6], &[3, 42], Some((5, 0, 42)))).unwrap();
        assert_eq!(tc.cmp_id, 7);
        assert_eq!(tc.consent_language, "EN");
        assert_eq!(tc.publisher_cc, "FR");
        assert_eq!(tc.purpose_consents, [1, 5, 6].into());
        assert_eq!(tc.vendor_consents, [3, 42].into());
        assert!(tc.allows(42, 6));
        assert!(!tc.allows(42, 5), "publisher restriction: not allowed");
        assert!(tc.allows(3, 5));
        assert!(!tc.allows(42, 2), "no purpose consent");
        assert!(!tc.allows(9, 6), "no vendor consent");
    }

    #[test]
    fn each_check_has_its_code() {
        assert_eq!(
            decode(&core(1, 4, true, &[], &[], None))
                .unwrap_err()
                .code()
                .as_str(),
            "tcf_version"
        );
        assert_eq!(
            decode(&core(2, 2, true, &[], &[], None))
                .unwrap_err()
                .code()
                .as_str(),
            "tcf_policy_version"
        );
        assert_eq!(
            decode(&core(2, 4, false, &[], &[], None))
                .unwrap_err()
                .code()
                .as_str(),
            "tcf_not_service_specific"
        );
        assert_eq!(
            decode("not base64 at all!").unwrap_err().code().as_str(),
            "tcf_encoding"
        );
        let full = core(2, 4, true, &[1], &[1, 2], None);
        assert_eq!(
            decode(&full[..20]).unwrap_err().code().as_str(),
            "tcf_truncated"
        );
    }

    /// A core segment whose VendorConsents is a range section with MaxVendorId `max` and
    /// these (start, end) entries; every purpose consented.
    fn with_vendor_ranges(max: u16, ranges: &[(u16, u16)]) -> String {
        let mut w = BitWriter::default();
        w.push(6, 2)
            .push(36, 1)
            .push(36, 1)
            .push(12, 7)
            .push(12, 1)
            .push(6, 1)
            .letters("EN")
            .push(12, 100)
            .push(6, 4)
            .push(1, 1)
            .push(1, 0)
            .push(12, 0);
        w.push(24, (1 << 24) - 1)
            .push(24, 0)
            .push(1, 0)
            .letters("FR");
        w.push(16, max as u64)
            .push(1, 1)
            .push(12, ranges.len() as u64);
        for &(start, end) in ranges {
            w.push(1, 1).push(16, start as u64).push(16, end as u64);
        }
        w.push(16, 0).push(1, 0).push(12, 0);
        w.finish()
    }

    #[test]
    fn vendor_ranges_are_bounded_and_ordered() {
        let tc = decode(&with_vendor_ranges(50, &[(10, 20), (3, 3), (15, 50)])).unwrap();
        assert_eq!(
            tc.vendor_consents.iter().collect::<Vec<_>>(),
            [3].into_iter().chain(10..=50).collect::<Vec<_>>()
        );
        assert!(tc.allows(42, 1) && !tc.allows(51, 1) && !tc.allows(4, 1));
        // A range above MaxVendorId once granted every purpose to every vendor it named.
        let above = decode(&with_vendor_ranges(50, &[(1, 65535)])).unwrap_err();
        assert_eq!(above.code().as_str(), "tcf_vendor_above_max");
        let reversed = decode(&with_vendor_ranges(50, &[(30, 20)])).unwrap_err();
        assert_eq!(reversed.code().as_str(), "tcf_vendor_range");
        let zero = decode(&with_vendor_ranges(50, &[(0, 5)])).unwrap_err();
        assert_eq!(zero.code().as_str(), "tcf_vendor_range");
        // 4,095 overlapping full ranges decode at once, as a single range.
        let wide = vec![(1, 65535); 4095];
        let tc = decode(&with_vendor_ranges(65535, &wide)).unwrap();
        assert!(tc.vendor_consents.contains(&65535));
    }

    #[test]
    fn decodes_a_string_from_the_iab_reference_encoder() {
        // Made with @iabtechlabtcf/core 1.x (TCString.encode, core segment): CMP 10, service
        // specific, purposes 1, 5, 6 and 8, vendors 42 and 755, publisher country DE.
        let tc = decode("CQuci4AQuci4AAKABBENABEgAI0AAAAAAAYgF5wAgAVALzAAAAAA").unwrap();
        assert_eq!(tc.cmp_id, 10);
        assert!(tc.policy_version >= 4);
        assert_eq!(tc.publisher_cc, "DE");
        assert_eq!(tc.purpose_consents, [1, 5, 6, 8].into());
        assert_eq!(tc.vendor_consents, [42, 755].into());
        assert!(tc.allows(755, 8));
    }
}
