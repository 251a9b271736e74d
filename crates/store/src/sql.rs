//! The thin layer that lets one query text serve both backends: [`Sql`], a statement with `$N`
//! placeholders (which both SQLite and PostgreSQL read) and the values bound to them, and
//! [`Get`], typed column reads from either backend's rows. The [`crate::Dialect`] of each
//! backend turns an `Sql` into a sqlx query; nothing else here knows which backend runs it.

use crate::{Result, StoreError};

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer (`INTEGER`, `BIGINT`).
    Int(i64),
    /// A float (`REAL`, `DOUBLE PRECISION`).
    Real(f64),
    /// A boolean.
    Bool(bool),
    /// Text.
    Text(String),
    /// Bytes (`BLOB`, `BYTEA`).
    Blob(Vec<u8>),
    /// An integer or NULL.
    OptInt(Option<i64>),
    /// Text or NULL.
    OptText(Option<String>),
    /// Bytes or NULL.
    OptBlob(Option<Vec<u8>>),
}

macro_rules! value_from {
    ($($t:ty => $variant:ident $(. $conv:ident())?),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$variant(v $(.$conv())?)
            }
        })*
    };
}

value_from!(
    i64 => Int,
    f64 => Real,
    bool => Bool,
    String => Text,
    &str => Text.to_owned(),
    Vec<u8> => Blob,
    &[u8] => Blob.to_vec(),
    Option<i64> => OptInt,
    Option<String> => OptText,
    Option<Vec<u8>> => OptBlob,
);

/// A statement and its bound values.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    text: String,
    values: Vec<Value>,
}

impl Sql {
    /// A statement; its `$1`, `$2`, ... are given with [`Sql::arg`].
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    /// Binds the next numbered placeholder already written in the text.
    pub fn arg(mut self, value: impl Into<Value>) -> Self {
        self.values.push(value.into());
        self
    }

    /// Appends text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a new placeholder and binds it.
    pub fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        let n = self.values.len();
        self.text.push('$');
        self.text.push_str(&n.to_string());
        self
    }

    /// Appends `$a, $b, ...`, one placeholder per value.
    pub fn list<V: Into<Value>>(&mut self, values: impl IntoIterator<Item = V>) -> &mut Self {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(value);
        }
        self
    }

    /// Appends `($a, $b), ($c, $d), ...`: one parenthesized row per item.
    pub fn rows<T>(&mut self, items: &[T], row: impl Fn(&T) -> Vec<Value>) -> &mut Self {
        for (i, item) in items.iter().enumerate() {
            self.text.push_str(if i > 0 { ", (" } else { "(" });
            self.list(row(item));
            self.text.push(')');
        }
        self
    }

    /// The text and the values as written (`$N` placeholders), for a dialect to run.
    pub fn into_parts(self) -> Result<(String, Vec<Value>)> {
        Ok((self.text, self.values))
    }

    /// The text with every `$N` turned into an anonymous `?` and the values in the order the
    /// placeholders appear (repeated where a placeholder is). SQLite looks a numbered or named
    /// parameter up by a linear scan each time it binds one, so a statement with thousands of
    /// them (a multi-row insert) costs quadratic time; anonymous ones cost nothing.
    pub fn into_positional(self) -> Result<(String, Vec<Value>)> {
        let mut text = String::with_capacity(self.text.len());
        let mut values = Vec::with_capacity(self.values.len());
        let mut in_literal = false;
        let mut chars = self.text.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            if c == '\'' {
                in_literal = !in_literal;
            }
            let numbered =
                !in_literal && c == '$' && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit());
            if !numbered {
                text.push(c);
                continue;
            }
            let mut n = 0usize;
            while let Some(&(_, d)) = chars.peek().filter(|(_, d)| d.is_ascii_digit()) {
                n = n * 10 + d.to_digit(10).unwrap_or(0) as usize;
                chars.next();
            }
            let value =
                n.checked_sub(1)
                    .and_then(|i| self.values.get(i))
                    .ok_or(StoreError::Corrupt(
                        "a statement names a parameter it does not bind",
                    ))?;
            values.push(value.clone());
            text.push('?');
        }
        Ok((text, values))
    }
}

/// Typed reads of a row's columns by name, the same on both backends.
pub trait Get {
    /// An integer column.
    fn int(&self, column: &str) -> Result<i64>;
    /// An integer column that may be NULL.
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
    /// A float column.
    fn real(&self, column: &str) -> Result<f64>;
    /// A boolean column.
    fn boolean(&self, column: &str) -> Result<bool>;
    /// A text column.
    fn text(&self, column: &str) -> Result<String>;
    /// A text column that may be NULL.
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    /// A bytes column.
    fn blob(&self, column: &str) -> Result<Vec<u8>>;
    /// A bytes column that may be NULL.
    fn opt_blob(&self, column: &str) -> Result<Option<Vec<u8>>>;
}

/// Implements [`Get`] for a sqlx row type through `sqlx::Row::try_get`.
macro_rules! impl_get {
    ($row:ty) => {
        impl Get for $row {
            fn int(&self, column: &str) -> Result<i64> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn real(&self, column: &str) -> Result<f64> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn boolean(&self, column: &str) -> Result<bool> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn text(&self, column: &str) -> Result<String> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn blob(&self, column: &str) -> Result<Vec<u8>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_blob(&self, column: &str) -> Result<Option<Vec<u8>>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
        }
    };
}

impl_get!(sqlx::sqlite::SqliteRow);
impl_get!(sqlx::postgres::PgRow);

/// Adds a value to a backend's arguments.
pub(crate) fn add<'q, A>(args: &mut A, value: Value) -> Result<()>
where
    A: sqlx::Arguments<'q>,
    i64: sqlx::Encode<'q, A::Database> + sqlx::Type<A::Database>,
    f64: sqlx::Encode<'q, A::Database> + sqlx::Type<A::Database>,
    bool: sqlx::Encode<'q, A::Database> + sqlx::Type<A::Database>,
    String: sqlx::Encode<'q, A::Database> + sqlx::Type<A::Database>,
    Vec<u8>: sqlx::Encode<'q, A::Database> + sqlx::Type<A::Database>,
    Option<i64>: sqlx::Encode<'q, A::Database> + sqlx::Type<A::Database>,
    Option<String>: sqlx::Encode<'q, A::Database> + sqlx::Type<A::Database>,
    Option<Vec<u8>>: sqlx::Encode<'q, A::Database> + sqlx::Type<A::Database>,
{
    let added = match value {
        Value::Int(v) => args.add(v),
        Value::Real(v) => args.add(v),
        Value::Bool(v) => args.add(v),
        Value::Text(v) => args.add(v),
        Value::Blob(v) => args.add(v),
        Value::OptInt(v) => args.add(v),
        Value::OptText(v) => args.add(v),
        Value::OptBlob(v) => args.add(v),
    };
    added.map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))
}

/// The two statement runners of a [`crate::Dialect`] impl, for a backend whose arguments type
/// is `$args` and which takes the statement's parts from `Sql::$parts` (PostgreSQL its own
/// `$N`, SQLite anonymous `?`): the code is the same for both backends, only these differ.
macro_rules! statement_runners {
    ($args:ty, $parts:ident) => {
        async fn execute(conn: &mut Self::Connection, sql: Sql) -> Result<u64> {
            let (text, values) = sql.$parts()?;
            let mut args = <$args>::default();
            for value in values {
                crate::sql::add(&mut args, value)?;
            }
            let done = sqlx::query_with(&text, args).execute(conn).await?;
            Ok(done.rows_affected())
        }

        async fn fetch_all(conn: &mut Self::Connection, sql: Sql) -> Result<Vec<Self::Row>> {
            let (text, values) = sql.$parts()?;
            let mut args = <$args>::default();
            for value in values {
                crate::sql::add(&mut args, value)?;
            }
            Ok(sqlx::query_with(&text, args).fetch_all(conn).await?)
        }
    };
}

pub(crate) use statement_runners;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut q = Sql::new("SELECT a FROM t WHERE k = $1").arg(7i64);
        q.push(" AND b IN (")
            .list(["x", "y"])
            .push(") AND c = ")
            .bind(true);
        q.push("; INSERT INTO u VALUES ")
            .rows(&[1i64, 2], |n| vec![(*n).into(), Value::OptText(None)]);
        let (text, values) = q.clone().into_parts().unwrap();
        assert_eq!(
            text,
            "SELECT a FROM t WHERE k = $1 AND b IN ($2, $3) AND c = $4; \
             INSERT INTO u VALUES ($5, $6), ($7, $8)"
        );
        assert_eq!(values.len(), 8);
        assert_eq!(values[1], Value::Text("x".into()));
        let (text, positional) = q.into_positional().unwrap();
        assert!(
            text.starts_with("SELECT a FROM t WHERE k = ? AND b IN (?, ?)"),
            "{text}"
        );
        assert_eq!(positional, values);
    }

    #[test]
    fn positional_form_repeats_and_reorders_values() {
        let q = Sql::new("UPDATE t SET a = '$9', b = $2 WHERE c = $1 AND d + $3 <= $2")
            .arg(1i64)
            .arg(2i64)
            .arg(3i64);
        let (text, values) = q.into_positional().unwrap();
        assert_eq!(
            text,
            "UPDATE t SET a = '$9', b = ? WHERE c = ? AND d + ? <= ?"
        );
        assert_eq!(
            values,
            [Value::Int(2), Value::Int(1), Value::Int(3), Value::Int(2)]
        );
        assert!(Sql::new("SELECT $2").arg(1i64).into_positional().is_err());
    }
}
