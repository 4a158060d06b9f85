//! Every training setting, declared once: its meaning (the flag's help), its name (the
//! `config.json` key and the flag), its type, and its value in each recipe, as a function of
//! the [`Case`] (which recipe, mode and initialisation). The sections of [`super::TrainConfig`]
//! and their overrides are generated from this table, and so are `train`'s flags with their
//! `[default: ...]` texts. To add a setting, add its line here and use it.
//!
//! [`Case`]: super::recipe::Case

/// The training settings table (see [`crate::support::settings`] for its form); `$then` is the
/// macro that generates code from it.
#[macro_export]
macro_rules! training_settings {
    ($then:path) => {
        $then! {
            defaults(case: $crate::config::recipe::Case);

            /// Which images train and validate, and how they become network inputs.
            images: ImageConfig / ImageOverrides {
                /// Validation images: `blocks:F` (a contiguous run of frames, fraction F, of
                /// every recording), `groups:F` (whole sittings of photos), `recordings` (one
                /// whole recording per class), `tail:F` (the last frames of each class) or
                /// `test` (the dataset's `Test/` folder).
                val_split: $crate::data::ValSplit
                    [optional "from the data: blocks:0.2 for video frames, groups:0.2 otherwise"] = None,
                /// Frozen mode: also estimate the accuracy by K-fold cross-validation of the
                /// top, K tops each trained on the stored features of all but one fold of the
                /// training and validation images (whole sittings) and scored on that fold;
                /// written to cross-validation.json.
                // One split of a few hundred photos is a noisy estimate (BENCHMARKS.md).
                folds: usize [optional "off"] = None,
                /// Input size in pixels.
                image_size: usize [optional "from the data: 100 for small images, 224 for photos (288 frozen)"] = None,
                /// The share of the image's shorter side kept, around its centre, before it is
                /// resized to the input: 1 keeps the whole centred square, 0.875 is ImageNet's
                /// evaluation crop (the shorter side to 256, the centre 224).
                crop: f64 [optional "from the data: 1 for small images, 0.875 for photos"] = None,
                /// Train on every Nth video frame of each class (neighbouring frames are
                /// near-copies); validation keeps all its images.
                frame_stride: usize = 1,
                /// Input normalisation.
                normalization: $crate::preprocess::Normalization = if case.notebook {
                    $crate::preprocess::Normalization::Rescale
                } else {
                    $crate::preprocess::Normalization::Caffe
                },
                /// Training augmentation: `none`, `notebook` (shear 0.2, zoom 0.2, flip), `photo`
                /// (random resized crops of 25-100% of the area, flip, brightness and colour
                /// jitter), or a list like `flip,zoom=0.2,crop=0.3:1,brightness=0.8:1.2`.
                augment: $crate::data::Augment
                    [optional "from the data: notebook for small images, photo for photos"] =
                    if case.notebook {
                        Some($crate::data::Augment::notebook())
                    } else if case.frozen {
                        Some($crate::data::Augment::default())
                    } else {
                        None
                    },
                /// Frozen mode: run the backbone on augmented images every epoch instead of
                /// caching its features once (slower; the only way to augment in frozen mode).
                // The notebook ran the backbone on augmented images every epoch.
                feature_cache: bool [switch "no-feature-cache"] = !case.notebook,
                /// Leave out unreadable images (each is reported in train.log and config.json)
                /// instead of refusing the dataset.
                skip_bad_images: bool [switch] = false,
            }

            /// The network: its new top, its architecture and where its weights start.
            model: ModelConfig / ModelOverrides {
                /// The new top.
                // A linear top with label smoothing generalises best to unseen views on stored
                // features (BENCHMARKS.md: 99.85% against the notebook's top's 99.17%).
                head: $crate::model::HeadKind = if case.converges() {
                    $crate::model::HeadKind::Linear
                } else {
                    $crate::model::HeadKind::Mlp
                },
                /// Architecture variant (the ImageNet weights are Keras').
                layout: $crate::model::Layout = $crate::model::Layout::Keras,
                /// ImageNet weights file (TF.js model.json or converted .safetensors).
                weights: ::std::path::PathBuf [optional "the fetched cache"] = None,
                /// Batch norm while fine-tuning.
                // A pretrained backbone needs only small corrections with statistics it
                // already has; a random one must learn its batch-norm statistics.
                batchnorm: $crate::model::BatchNormMode = if case.pretrained() {
                    $crate::model::BatchNormMode::Frozen
                } else {
                    $crate::model::BatchNormMode::Train
                },
                /// Fine-tuning: the first part of the backbone that trains; earlier parts keep
                /// their weights and no gradient is computed through them.
                // The stem and stage 2 compute generic edges and textures that ImageNet taught
                // well; keeping them fixed regularises and skips their backward pass. With
                // label smoothing: 99.94% mean of three seeds against 99.39% (BENCHMARKS.md).
                train_from: $crate::model::TrainFrom = if case.pretrained() && !case.frozen {
                    $crate::model::TrainFrom::Stage3
                } else {
                    $crate::model::TrainFrom::Stem
                },
                /// "None of these": the share of validation images (images of the classes) the
                /// rejection threshold may reject, fitted at the end of training.
                reject_rate: f64 = 0.02,
            }

            /// The optimizer, its learning rates and the loss.
            optimization: OptimizationConfig / OptimizationOverrides {
                /// Images per optimizer step (lbfgs takes every training image at each step).
                // A frozen backbone makes large batches of stored features cheap.
                batch_size: usize = if case.converges() { 64 } else { 16 },
                /// Optimizer.
                // On stored features L-BFGS fits the linear top to its optimum in seconds,
                // where Adam's few steps on a small set stop short of it (BENCHMARKS.md).
                optimizer: $crate::config::OptimizerKind = if case.notebook {
                    $crate::config::OptimizerKind::Sgd
                } else if case.converges() {
                    $crate::config::OptimizerKind::Lbfgs
                } else {
                    $crate::config::OptimizerKind::Adam
                },
                /// Learning rate of the new top, the schedule's peak (lbfgs finds its own
                /// step lengths).
                lr: f64 = if case.notebook { 1e-4 } else { 1e-3 },
                /// Backbone learning rate as a fraction of --lr, when fine-tuning.
                backbone_lr_scale: f64 = if case.pretrained() { 0.1 } else { 1.0 },
                /// SGD momentum.
                momentum: f64 = 0.9,
                /// Weight decay (L2 for sgd/adam, decoupled for adamw, for lbfgs half the
                /// squared weights of the top added to the loss it minimises).
                weight_decay: f64 = if case.converges() {
                    $crate::config::FITTED_TOP_WEIGHT_DECAY
                } else {
                    0.0
                },
                /// Learning-rate schedule.
                schedule: $crate::config::Schedule = if case.notebook || case.frozen {
                    $crate::config::Schedule::Constant
                } else {
                    $crate::config::Schedule::Cosine
                },
                /// Warm-up steps of the cosine schedule.
                warmup_steps: usize = if case.notebook { 0 } else { 50 },
                /// Label smoothing of the cross-entropy.
                // Near-copies of the training frames otherwise make the top overconfident; on
                // photos the frozen top's weight decay regularises it, and smoothing costs
                // accuracy (BENCHMARKS.md).
                label_smoothing: f64 [optional "from the data: 0.1 for video frames, 0 otherwise"] =
                    if case.notebook {
                        Some(0.0)
                    } else if case.converges() {
                        None
                    } else {
                        Some(0.1)
                    },
                /// How uneven classes are weighed: `none` (every image alike), `weights` (the
                /// loss of each image inversely to its class's size: every class alike) or
                /// `sampler` (every class drawn equally often; small classes' images repeat).
                class_balance: $crate::config::ClassBalance = $crate::config::ClassBalance::None,
                /// Seed of the initialisation, data order and augmentation.
                seed: u64 = 42,
            }

            /// How long the run trains.
            schedule: ScheduleConfig / ScheduleOverrides {
                /// Epochs (for lbfgs, steps of 20 iterations each, validated after each).
                // On stored features an epoch costs seconds: the top trains until it has
                // converged or the honest validation stops improving (see --patience).
                epochs: usize = if case.converges() { 10 } else { 2 },
                /// Optimizer steps per epoch.
                // Fine-tuning and the notebook train the notebook's epochs; a frozen backbone
                // makes full passes cheap.
                steps_per_epoch: usize [optional "a full pass"] = (case.notebook || !case.frozen)
                    .then_some($crate::config::recipe::NOTEBOOK_STEPS),
                /// Fine-tuning: epochs training only the new top on stored features first (a
                /// linear top is fitted by L-BFGS, an epoch being one step of 20 iterations
                /// over every training image; an MLP top by the run's optimizer).
                head_warmup_epochs: usize = 0,
            }

            /// When the run stops, and what it keeps then.
            stopping: StoppingConfig / StoppingOverrides {
                /// Stop as soon as the validation accuracy reaches this fraction, e.g. 0.99.
                stop_at_accuracy: f64 [optional "off"] = None,
                /// Early stopping: stop after this many epochs without improvement of
                /// --patience-on.
                patience: usize [optional "off"] = case.converges().then_some(3),
                /// What early stopping watches.
                patience_on: $crate::config::Monitor = $crate::config::Monitor::Loss,
                /// Keep the resume checkpoint (about 300 MB when fine-tuning) once the run has
                /// finished; by default it is removed then.
                keep_resume: bool [switch] = false,
            }
        }
    };
}
