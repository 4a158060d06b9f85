//! Settings declared once. A table (see `config::settings` and `compute::settings`) lists, per
//! section of a configuration, every setting: what it means (its doc comment, which is also its
//! flag's help), its name (the `config.json` key and, with dashes, the flag), its type, how a
//! flag sets it, and its value in each recipe. [`settings_sections!`] turns a table into the
//! section structs and their overrides; the command line turns the same table into flags.
//!
//! A table reads:
//!
//! ```text
//! defaults(case: CaseType);                 // what the default expressions may look at
//! /// section doc
//! section: SectionStruct / SectionOverrides {
//!     /// meaning
//!     name: Type = default expression,     // a value: `--name VALUE`
//!     name: Type [optional "none means"] = expression of Option<Type>,
//!     name: bool [switch] = expression,     // `--name` sets it
//!     name: bool [switch "no-name"] = expression, // `--no-name` clears it
//! }
//! ```
//!
//! An optional setting's flag takes a value or the text that says what none means, which sets
//! it to none: `--patience off` switches off what a recipe switched on.

use std::path::PathBuf;

/// A setting's value as help texts show it.
pub trait SettingText {
    fn setting_text(&self) -> String;
}

macro_rules! displayed {
    ($($type:ty),*) => {
        $(impl SettingText for $type {
            fn setting_text(&self) -> String {
                self.to_string()
            }
        })*
    };
}
displayed!(usize, u64, f64, bool, String);

impl SettingText for PathBuf {
    fn setting_text(&self) -> String {
        self.display().to_string()
    }
}

/// Implements [`SettingText`] with the value's [`super::spelling`] (its `config.json` name).
#[macro_export]
macro_rules! spelled_setting {
    ($($type:ty),* $(,)?) => {
        $(impl $crate::support::settings::SettingText for $type {
            fn setting_text(&self) -> String {
                $crate::support::spelling(self)
            }
        })*
    };
}

/// Declares the sections of a settings table (see the module's documentation): for each, the
/// struct (serialised flat into its configuration), its `defaults` from the table's default
/// expressions, `text` (a setting's value by name), and the overrides struct with `apply`.
#[macro_export]
macro_rules! settings_sections {
    (
        defaults($case:ident: $Case:ty);
        $(
            $(#[doc = $section_doc:literal])*
            $section:ident: $Section:ident / $Overrides:ident {
                $(
                    $(#[doc = $doc:literal])*
                    $name:ident: $ty:ty $([$($kind:tt)*])? = $default:expr
                ),* $(,)?
            }
        )*
    ) => {
        $(
            $(#[doc = $section_doc])*
            #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
            pub struct $Section {
                $( $(#[doc = $doc])* pub $name: $crate::setting_type!($ty $(, $($kind)*)?), )*
            }

            impl $Section {
                /// The section as the table's defaults have it for `case`.
                #[allow(unused_variables)]
                pub fn defaults($case: &$Case) -> Self {
                    Self { $( $name: $default, )* }
                }

                /// The value of the setting `name`, as help texts show it.
                pub fn text(&self, name: &str) -> Option<String> {
                    match name {
                        $( stringify!($name) => Some($crate::setting_text!(&self.$name $(, $($kind)*)?)), )*
                        _ => None,
                    }
                }
            }

            /// The settings of the section given explicitly (by flags); `None` keeps the value.
            #[derive(Clone, Debug, Default)]
            pub struct $Overrides {
                $( pub $name: Option<$crate::setting_type!($ty $(, $($kind)*)?)>, )*
            }

            impl $Overrides {
                /// `section` with every given setting replaced.
                pub fn apply(self, section: &mut $Section) {
                    $( if let Some(value) = self.$name {
                        section.$name = value;
                    } )*
                }
            }
        )*
    };
}

/// The field type of a setting of a kind.
#[doc(hidden)]
#[macro_export]
macro_rules! setting_type {
    ($ty:ty) => { $ty };
    ($ty:ty, optional $none:literal) => { ::std::option::Option<$ty> };
    ($ty:ty, switch $($flag:literal)?) => { $ty };
}

/// A setting's field as help texts show it.
#[doc(hidden)]
#[macro_export]
macro_rules! setting_text {
    ($value:expr) => {
        $crate::support::settings::SettingText::setting_text($value)
    };
    ($value:expr, optional $none:literal) => {
        match $value {
            ::std::option::Option::Some(value) => {
                $crate::support::settings::SettingText::setting_text(value)
            }
            ::std::option::Option::None => $none.to_string(),
        }
    };
    ($value:expr, switch $($flag:literal)?) => {
        $crate::support::settings::SettingText::setting_text($value)
    };
}
