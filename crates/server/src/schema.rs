//! OpenAPI schemas derived from the closed sets of names of the domain and the engine, so a wire field that takes
//! one of them lists exactly the values the code accepts.

use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// Names of a closed set (a `named_enum!` of the domain).
pub trait Names: Copy + 'static {
    /// Every value.
    const VALUES: &'static [Self];
    /// A value's name.
    fn name(self) -> &'static str;
}

macro_rules! names {
    ($($t:ty),*) => {
        $(impl Names for $t {
            const VALUES: &'static [Self] = <$t>::ALL;
            fn name(self) -> &'static str {
                self.as_str()
            }
        })*
    };
}

names!(
    candor_domain::RequestKind,
    candor_domain::Jurisdiction,
    candor_domain::RequestStatus,
    candor_domain::ConsentMethod,
    candor_domain::ConsentState
);

impl Names for candor_engine::QueryKind {
    const VALUES: &'static [Self] = &candor_engine::QueryKind::ALL;
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// A string schema whose values are the names of `T`.
pub fn names_schema<T: Names>() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(T::VALUES.iter().map(|v| v.name())))
        .build()
}
