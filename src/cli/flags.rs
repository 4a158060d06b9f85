//! The settings' flags, made from the same tables as the configuration sections (see
//! [`crate::support::settings`]): each setting's flag, help and `[default: ...]` text (from
//! the recipes) come from its one declaration.

use std::fmt::Display;
use std::str::FromStr;

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use crate::compute::ComputeOverrides;
use crate::config::{
    ImageOverrides, ModelOverrides, OptimizationOverrides, Overrides, ScheduleOverrides,
    StoppingOverrides,
};

/// Implements clap's [`Args`] and [`FromArgMatches`] for the overrides of every section of a
/// settings table.
macro_rules! settings_flags {
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
            impl FromArgMatches for $Overrides {
                fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
                    Ok(Self { $( $name: flag_value!(matches, $name, $ty $(, $($kind)*)?), )* })
                }

                fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
                    *self = Self::from_arg_matches(matches)?;
                    Ok(())
                }
            }

            impl Args for $Overrides {
                fn augment_args(command: Command) -> Command {
                    command $( .arg(flag!($name, $ty, &[$($doc),*] $(, $($kind)*)?)) )*
                }

                fn augment_args_for_update(command: Command) -> Command {
                    Self::augment_args(command)
                }
            }
        )*
    };
}

/// The flag of a setting of a kind.
macro_rules! flag {
    ($name:ident, $ty:ty, $doc:expr) => {
        value_flag(stringify!($name), $doc).value_parser(clap::value_parser!($ty))
    };
    ($name:ident, $ty:ty, $doc:expr, optional $none:literal) => {
        value_flag(stringify!($name), $doc).value_parser(optional_value::<$ty>($none))
    };
    ($name:ident, $ty:ty, $doc:expr, switch) => {
        switch_flag(stringify!($name), dashed(stringify!($name)), $doc)
    };
    ($name:ident, $ty:ty, $doc:expr, switch $flag:literal) => {
        switch_flag(stringify!($name), $flag.to_string(), $doc)
    };
}

/// What the flag of a setting of a kind gives its override.
macro_rules! flag_value {
    ($matches:ident, $name:ident, $ty:ty) => {
        $matches.get_one::<$ty>(stringify!($name)).cloned()
    };
    ($matches:ident, $name:ident, $ty:ty, optional $none:literal) => {
        $matches.get_one::<Option<$ty>>(stringify!($name)).cloned()
    };
    ($matches:ident, $name:ident, $ty:ty, switch) => {
        $matches.get_flag(stringify!($name)).then_some(true)
    };
    ($matches:ident, $name:ident, $ty:ty, switch $flag:literal) => {
        $matches.get_flag(stringify!($name)).then_some(false)
    };
}

crate::training_settings!(settings_flags);
crate::compute_settings!(settings_flags);

/// `val_split` as a flag: `val-split`.
fn dashed(name: &str) -> String {
    name.replace('_', "-")
}

/// A doc comment's lines as one paragraph, without its final full stop (as clap shows the
/// help of its derived flags).
fn paragraph(doc: &[&str]) -> String {
    let text = doc.iter().map(|line| line.trim()).collect::<Vec<_>>().join(" ");
    text.strip_suffix('.').map(str::to_string).unwrap_or(text)
}

/// `--name VALUE`, described by its doc and the recipes' value.
fn value_flag(name: &'static str, doc: &[&str]) -> Arg {
    Arg::new(name).long(dashed(name)).value_name(name.to_uppercase()).help(format!(
        "{} [default: {}]",
        paragraph(doc),
        crate::config::recipe::describe_default(name)
    ))
}

/// The value of an optional setting's flag: `none` (the text that says what none means, such
/// as `off`) sets it to none, an empty text is refused (a path would otherwise be read as
/// the empty path), anything else is parsed as a value.
fn optional_value<T>(
    none: &'static str,
) -> impl Fn(&str) -> Result<Option<T>, String> + Clone + Send + Sync + 'static
where
    T: FromStr + Clone + Send + Sync + 'static,
    T::Err: Display,
{
    move |text| {
        if text == none {
            return Ok(None);
        }
        if text.is_empty() {
            return Err("it needs a value".to_string());
        }
        text.parse().map(Some).map_err(|error: T::Err| error.to_string())
    }
}

/// `--flag`, which sets the setting `name`.
fn switch_flag(name: &'static str, flag: String, doc: &[&str]) -> Arg {
    Arg::new(name).long(flag).action(ArgAction::SetTrue).help(paragraph(doc))
}

/// Every training setting's flag, section by section.
impl FromArgMatches for Overrides {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self {
            images: ImageOverrides::from_arg_matches(matches)?,
            model: ModelOverrides::from_arg_matches(matches)?,
            optimization: OptimizationOverrides::from_arg_matches(matches)?,
            schedule: ScheduleOverrides::from_arg_matches(matches)?,
            stopping: StoppingOverrides::from_arg_matches(matches)?,
            compute: ComputeOverrides::from_arg_matches(matches)?,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for Overrides {
    fn augment_args(command: Command) -> Command {
        let command = ImageOverrides::augment_args(command);
        let command = ModelOverrides::augment_args(command);
        let command = OptimizationOverrides::augment_args(command);
        let command = ScheduleOverrides::augment_args(command);
        let command = StoppingOverrides::augment_args(command);
        ComputeOverrides::augment_args(command)
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Parsed {
        #[command(flatten)]
        settings: Overrides,
    }

    fn parse(args: &[&str]) -> Overrides {
        use clap::Parser;
        Parsed::try_parse_from(std::iter::once("fruitlab").chain(args.iter().copied()))
            .unwrap()
            .settings
    }

    #[test]
    fn every_kind_of_flag_sets_its_setting() {
        let o = parse(&[
            "--lr",
            "0.5",
            "--val-split",
            "tail:0.3",
            "--steps-per-epoch",
            "7",
            "--no-feature-cache",
            "--keep-resume",
            "--optimizer",
            "sgd",
            "--threads",
            "3",
        ]);
        assert_eq!(o.optimization.lr, Some(0.5));
        assert_eq!(o.images.val_split, Some(Some(crate::data::ValSplit::Tail(0.3))));
        assert_eq!(o.schedule.steps_per_epoch, Some(Some(7)));
        assert_eq!((o.images.feature_cache, o.stopping.keep_resume), (Some(false), Some(true)));
        assert_eq!(o.optimization.optimizer, Some(crate::config::OptimizerKind::Sgd));
        assert_eq!(o.compute.threads, Some(Some(3)));
        let none = parse(&[]);
        assert_eq!((none.optimization.lr, none.images.feature_cache), (None, None));
        assert_eq!(none.stopping.keep_resume, None);
    }

    #[test]
    fn off_switches_off_what_the_recipe_switched_on() {
        use crate::config::{Init, Mode, Recipe, resolve};
        let frozen = |args: &[&str]| {
            resolve(Recipe::Default, Mode::Frozen, Init::Imagenet, "data".into(), parse(args))
        };
        assert_eq!(frozen(&[]).stopping.patience, Some(3));
        assert_eq!(frozen(&["--patience", "off"]).stopping.patience, None);
        assert_eq!(frozen(&["--patience", "5"]).stopping.patience, Some(5));
        assert_eq!(frozen(&["--folds", "off"]).images.folds, None);
        use clap::Parser;
        let error = Parsed::try_parse_from(["fruitlab", "--patience", "of"]).err().unwrap();
        let error = error.to_string();
        assert!(error.contains("'of'") && error.contains("--patience"), "{error}");
        let error = Parsed::try_parse_from(["fruitlab", "--weights", ""]).err().unwrap();
        let error = error.to_string();
        assert!(error.contains("--weights") && error.contains("needs a value"), "{error}");
    }
}
