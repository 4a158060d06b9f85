//! What a run says before it trains: a short header (the data, the recipe's key values, where
//! it computes, where it writes, where a resumed run picks up), and warnings, with numbers,
//! when the run cannot mean much.

use crate::config::{Init, Mode, Schedule, TrainConfig};
use crate::model::TrainFrom;
use crate::run::ResumeState;
use crate::support::spelling;

use super::prepare::PreparedData;

/// Classes with fewer training images than this are warned about.
const FEW_IMAGES: usize = 5;
/// A network trained from scratch needs far more optimizer steps than this to leave chance.
const FEW_STEPS_FROM_SCRATCH: usize = 2000;

/// The header lines.
pub fn header(
    config: &TrainConfig,
    data: &PreparedData,
    out: &std::path::Path,
    resume: Option<&ResumeState>,
) -> Vec<String> {
    let summary = &data.summary;
    let what = match (config.mode, config.init) {
        (Mode::Finetune, Init::Imagenet) => "fine-tune ResNet-50 from ImageNet weights",
        (Mode::Finetune, Init::Random) => "train ResNet-50 from scratch",
        (Mode::Frozen, Init::Imagenet) => "train a new top on the frozen ImageNet ResNet-50",
        (Mode::Frozen, Init::Random) => "train a new top on a frozen random ResNet-50",
    };
    let mut lines = vec![
        format!("{what} -> {}", out.display()),
        format!(
            "  data     {} classes: {} training, {} validation images, {}",
            summary.classes,
            summary.train_images,
            summary.val_images,
            data.describe_storage()
        ),
        format!("  validate on {}{}", config.images.split().describe(), describe_folds(config)),
        format!("  recipe   {}: {}", spelling(&config.recipe), describe_recipe(config)),
        format!("  trains   {}", describe_training(config)),
        format!(
            "  compute  {} backend, {}, {} thread(s), {}",
            spelling(&config.compute.backend),
            crate::compute::arithmetic().describe(),
            rayon::current_num_threads(),
            crate::run::record::cpu_model()
        ),
    ];
    if let Some(state) = resume {
        let steps = config.steps_in_epoch(data.train.len());
        lines.push(format!(
            "  resume   picks up at epoch {}/{}, step {}/{steps}",
            state.epochs_done + 1,
            config.schedule.epochs,
            state.step_in_epoch
        ));
    }
    lines
}

/// The cross-validation after training, when asked for.
fn describe_folds(config: &TrainConfig) -> String {
    config.images.folds.map_or(String::new(), |folds| {
        format!("; then {folds}-fold cross-validation of the top over whole sittings")
    })
}

/// The recipe's key values in one line.
fn describe_recipe(config: &TrainConfig) -> String {
    let o = &config.optimization;
    let epochs = config.schedule.epochs;
    let optimizer = format!("{} {:e}", spelling(&o.optimizer), o.lr);
    let steps = match config.schedule.steps_per_epoch {
        Some(steps) => format!("{epochs}x{steps} steps"),
        None => format!("{epochs} full passes"),
    };
    let schedule = match o.schedule {
        Schedule::Constant => "constant".to_string(),
        Schedule::Cosine => format!("cosine ({} warm-up)", o.warmup_steps),
    };
    match config.mode {
        Mode::Frozen if config.steps_on_whole_set() => format!(
            "lbfgs over every training image at once, weight decay {:e}, up to {epochs} steps of {} iterations",
            o.weight_decay,
            super::optim::LBFGS_ITERATIONS
        ),
        Mode::Frozen => format!("{optimizer}, {schedule}, batch {}, {steps}", o.batch_size),
        Mode::Finetune => format!(
            "{optimizer}, backbone x{}, {schedule}, batch {}, {steps}, bn {}{}",
            o.backbone_lr_scale,
            o.batch_size,
            spelling(&config.model.batchnorm),
            describe_head_warmup(config)
        ),
    }
}

/// Fine-tuning's head warm-up, when asked for.
fn describe_head_warmup(config: &TrainConfig) -> String {
    match config.schedule.head_warmup_epochs {
        0 => String::new(),
        epochs if config.warms_up_by_lbfgs() => format!(
            "; first the top alone fitted by lbfgs on stored features ({epochs} steps of {} iterations)",
            super::optim::LBFGS_ITERATIONS
        ),
        epochs => format!("; first the top alone on stored features ({epochs} epochs)"),
    }
}

/// Which layers learn, and with what loss, in one line.
fn describe_training(config: &TrainConfig) -> String {
    let top = spelling(&config.model.head);
    let layers = match (config.mode, config.model.train_from) {
        (Mode::Frozen, _) => format!("the new {top} top only"),
        (Mode::Finetune, TrainFrom::Stem) => format!("every layer and the new {top} top"),
        (Mode::Finetune, from) => format!(
            "the backbone from {} on and the new {top} top (earlier layers fixed)",
            spelling(&from)
        ),
    };
    let layers = match config.optimization.smoothing() {
        smoothing if smoothing > 0.0 => format!("{layers}; label smoothing {smoothing}"),
        _ => layers,
    };
    match config.optimization.class_balance {
        crate::config::ClassBalance::Weights => format!("{layers}; every class weighs alike"),
        crate::config::ClassBalance::Sampler => {
            format!("{layers}; every class drawn equally often")
        }
        crate::config::ClassBalance::None => layers,
    }
}

/// Warnings about a run that cannot mean much, with the numbers that say why.
pub fn warnings(config: &TrainConfig, data: &PreparedData) -> Vec<String> {
    let mut warnings = Vec::new();
    let summary = &data.summary;
    if let Some(first) = summary.nested_examples.first() {
        warnings.push(format!(
            "{} image(s) in sub-folders of class folders are not used (a class is one folder), e.g. {}",
            summary.nested_images,
            first.display()
        ));
    }
    if let Some(longest) = summary.long_sittings.iter().max_by_key(|s| s.images) {
        warnings.push(format!(
            "{} class(es) have a sitting too long to hold out whole (numbered names, capture times or near-identical pictures join its photos; the longest: {} of the {} photos of {}): validation holds out a contiguous block of such a sitting instead, which can flatter as neighbouring video frames do; a Test/ folder of other sittings measures honestly",
            summary.long_sittings.len(),
            longest.images,
            longest.of,
            longest.class
        ));
    }
    let mut counts = vec![0usize; data.classes.len()];
    for &label in &data.train.labels {
        counts[label] += 1;
    }
    let few: Vec<String> = data
        .classes
        .iter()
        .zip(&counts)
        .filter(|(_, n)| **n < FEW_IMAGES)
        .map(|(class, n)| format!("{class} ({n})"))
        .collect();
    if !few.is_empty() {
        warnings.push(format!(
            "{} class(es) have fewer than {FEW_IMAGES} training images after the validation split: {}",
            few.len(),
            few.join(", ")
        ));
    }
    let total_steps = config.schedule.epochs * config.steps_in_epoch(data.train.len());
    let warmup_steps = config.optimization.warmup_steps;
    if config.optimization.schedule == Schedule::Cosine && total_steps < warmup_steps {
        warnings.push(format!(
            "the run has {total_steps} optimizer steps, fewer than the {warmup_steps} warm-up steps: the learning rate never reaches its peak"
        ));
    }
    if config.init == Init::Random
        && config.mode == Mode::Finetune
        && total_steps < FEW_STEPS_FROM_SCRATCH
    {
        warnings.push(format!(
            "from scratch, {total_steps} optimizer steps are few (thousands are needed to leave chance level): expect an accuracy far below a pretrained model's"
        ));
    }
    warnings
}
