//! Data subjects' rights requests: their kinds, the jurisdictions whose deadlines apply, and
//! the statuses a request moves through (received, then acknowledged, then completed).

crate::named_enum! {
    /// What the subject asks for.
    pub enum RequestKind {
        /// A copy of everything held (GDPR Art. 15 and 20, CCPA right to know).
        Access = "access",
        /// Erasure (GDPR Art. 17, CCPA right to delete).
        Erasure = "erasure",
        /// Restriction of processing (GDPR Art. 18).
        Restriction = "restriction",
        /// Objection to profiling and direct marketing (GDPR Art. 21).
        Objection = "objection",
        /// Opt-out of sale and sharing (CCPA).
        DoNotSell = "do_not_sell",
    }
}

crate::named_enum! {
    /// The law whose deadlines a request follows.
    pub enum Jurisdiction {
        /// GDPR: one calendar month, extendable once by two more.
        Gdpr = "gdpr",
        /// CCPA: 45 days, extendable once by 45; acknowledged within 10 business days.
        Ccpa = "ccpa",
    }
}

crate::named_enum! {
    /// Where a request stands.
    pub enum RequestStatus {
        /// Recorded, not yet acknowledged to the subject.
        Received = "received",
        /// Acknowledged to the subject, not yet fulfilled.
        Acknowledged = "acknowledged",
        /// Fulfilled: the right was run.
        Completed = "completed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde() {
        for kind in RequestKind::ALL {
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<RequestKind>(&json).unwrap(), *kind);
        }
        assert_eq!(Jurisdiction::parse("ccpa"), Some(Jurisdiction::Ccpa));
        assert_eq!(RequestStatus::names(), "received, acknowledged, completed");
        let err = serde_json::from_str::<Jurisdiction>("\"lgpd\"").unwrap_err();
        assert!(err.to_string().contains("gdpr, ccpa"), "{err}");
    }
}
