//! How a knob is declared: `knobs!` takes each config section's fields with
//! their doc line, type, default and (for numbers) allowed range, and
//! generates the section structs, their defaults, the key list `--set`
//! accepts, the range table, and the typed setter behind `--set`. Adding
//! a knob is one entry there (and its line in `config.example.ron`, which a
//! test keeps in step).

/// A value a knob can hold, as `--set key=value` gives it.
pub trait Knob: Sized {
    /// Parses a `--set` value.
    fn parse_knob(text: &str) -> Result<Self, String>;
    /// The value as a number, for knobs with a range.
    fn as_number(&self) -> Option<u64>;
}

fn parse_ron<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    ron::from_str(text).map_err(|e| e.code.to_string())
}

macro_rules! numeric_knob {
    ($($t:ty),*) => {$(
        impl Knob for $t {
            fn parse_knob(text: &str) -> Result<Self, String> {
                parse_ron(text)
            }
            fn as_number(&self) -> Option<u64> {
                u64::try_from(*self).ok()
            }
        }
    )*};
}
numeric_knob!(u8, u32, u64, usize);

impl Knob for bool {
    fn parse_knob(text: &str) -> Result<Self, String> {
        parse_ron(text)
    }
    fn as_number(&self) -> Option<u64> {
        None
    }
}

impl Knob for String {
    /// Strings may be given bare on a command line: `cpu=cortex-a72`.
    fn parse_knob(text: &str) -> Result<Self, String> {
        if text.starts_with('"') {
            parse_ron(text)
        } else {
            Ok(text.to_string())
        }
    }
    fn as_number(&self) -> Option<u64> {
        None
    }
}

/// Declares the config: for each section `name: Type { fields }`, each
/// field `name: type = default` with `, range MIN => MAX` for numbers
/// (inclusive). Generates `Config`, the section types, `KEYS`, `RANGES`,
/// `Config::set_knob` and `Config::numeric_knobs`.
macro_rules! knobs {
    ($(
        $(#[$section_meta:meta])*
        $section:ident: $Section:ident {
            $(
                $(#[$field_meta:meta])*
                $field:ident: $ty:ty = $default:expr $(, range $min:expr => $max:expr)?;
            )*
        }
    )*) => {
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $(pub $section: $Section,)*
        }

        $(
            $(#[$section_meta])*
            #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
            #[serde(default, deny_unknown_fields)]
            pub struct $Section {
                $($(#[$field_meta])* pub $field: $ty,)*
            }

            impl Default for $Section {
                fn default() -> Self {
                    $Section {
                        $($field: $default,)*
                    }
                }
            }
        )*

        /// Every key `--set` accepts, in config order.
        pub const KEYS: &[&str] = &[
            $($(concat!(stringify!($section), ".", stringify!($field)),)*)*
        ];

        /// The allowed range of every numeric knob, inclusive (also in
        /// config.example.ron and the README).
        pub const RANGES: &[(&str, u64, u64)] = &[
            $($($(
                (concat!(stringify!($section), ".", stringify!($field)), $min, $max),
            )?)*)*
        ];

        impl Config {
            /// Sets knob `key` from its `--set` text; `None` if there is no
            /// such knob.
            fn set_knob(&mut self, key: &str, text: &str) -> Option<Result<(), String>> {
                use $crate::config::knob::Knob;
                match key {
                    $($(
                        concat!(stringify!($section), ".", stringify!($field)) => Some(
                            <$ty as Knob>::parse_knob(text).map(|v| self.$section.$field = v),
                        ),
                    )*)*
                    _ => None,
                }
            }

            /// Each knob's key and, for a number, its value.
            fn numeric_knobs(&self) -> Vec<(&'static str, Option<u64>)> {
                use $crate::config::knob::Knob;
                vec![
                    $($(
                        (
                            concat!(stringify!($section), ".", stringify!($field)),
                            Knob::as_number(&self.$section.$field),
                        ),
                    )*)*
                ]
            }
        }
    };
}

pub(crate) use knobs;
