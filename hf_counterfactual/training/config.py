"""The settings of the one training loop every method shares (parsed by `HfArgumentParser`)."""

from dataclasses import dataclass, field


@dataclass
class TrainingConfig:
    """Optimisation, checkpointing and logging settings of `hf_counterfactual.training.train`."""

    output_dir: str = field(
        default="outputs/run", metadata={"help": "Where checkpoints, the model and metrics go."}
    )
    seed: int = field(default=0, metadata={"help": "Seed for weights, data order and augmentation."})
    num_epochs: int = field(default=1, metadata={"help": "Passes over the training set."})
    max_steps: int | None = field(
        default=None, metadata={"help": "Stop after this many optimizer steps (overrides num_epochs)."}
    )
    batch_size: int = field(
        default=32,
        metadata={
            "help": "Global batch per optimizer micro-step, split across processes (so 1 and N processes "
            "see the same batches)."
        },
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-batches per optimizer step."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    adam_beta1: float = field(
        default=0.9,
        metadata={"help": "AdamW beta1 (GANs use 0.5); lr_scheduler='onecycle' cycles it in [0.85, 0.95]."},
    )
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    lr_scheduler: str = field(
        default="onecycle",
        metadata={
            "help": "'onecycle' (cosine one-cycle, as the PAT paper) or any transformers scheduler name "
            "('linear', 'cosine', 'constant', ...)."
        },
    )
    warmup_ratio: float = field(
        default=0.2, metadata={"help": "Warm-up fraction of all steps (OneCycle pct_start)."}
    )
    max_grad_norm: float | None = field(default=None, metadata={"help": "Clip gradients to this norm."})
    mixed_precision: str = field(default="no", metadata={"help": "'no', 'fp16' or 'bf16' (Accelerate)."})
    torch_compile: bool = field(
        default=False,
        metadata={"help": "Compile the model with torch.compile (through Accelerate's dynamo plugin)."},
    )
    torch_compile_backend: str = field(
        default="inductor", metadata={"help": "torch.compile backend: 'inductor', 'aot_eager', ..."}
    )
    torch_compile_mode: str | None = field(
        default=None,
        metadata={"help": "torch.compile mode: None, 'reduce-overhead' (CUDA graphs), 'max-autotune', ..."},
    )
    dataloader_drop_last: bool = field(
        default=False,
        metadata={
            "help": "Drop the last incomplete batch of each epoch (a compiled model then sees one shape)."
        },
    )
    checkpointing_steps: int | None = field(
        default=None, metadata={"help": "Save an Accelerate checkpoint every N optimizer steps."}
    )
    checkpoints_total_limit: int | None = field(
        default=2, metadata={"help": "Keep at most this many checkpoints."}
    )
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder, or 'latest' for the newest under output_dir."}
    )
    log_with: str | None = field(
        default=None, metadata={"help": "Accelerate tracker: 'tensorboard', 'wandb', 'all', ... (None: off)."}
    )
    logging_steps: int = field(default=20, metadata={"help": "Log the loss every N optimizer steps."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    eval_batch_size: int = field(default=64, metadata={"help": "Batch size for prediction."})
    eval_steps: int | None = field(
        default=None,
        metadata={
            "help": "Run the method's evaluation every N optimizer steps and at the last one (None: never)."
        },
    )
    metric_for_best_model: str | None = field(
        default=None,
        metadata={"help": "Evaluation metric that ranks the evaluated models (None: no ranking)."},
    )
    greater_is_better: bool = field(
        default=True, metadata={"help": "Whether a larger metric_for_best_model is better."}
    )
    load_best_model_at_end: bool = field(
        default=False,
        metadata={"help": "Return and save the best-ranked evaluated weights instead of the last ones."},
    )
    disable_progress_bar: bool = field(default=False, metadata={"help": "Hide the tqdm bars."})

    def __post_init__(self):
        if self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("batch_size and gradient_accumulation_steps must be >= 1.")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}.")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise ValueError(f"eval_steps must be >= 1, got {self.eval_steps}.")
        if self.load_best_model_at_end and not (self.eval_steps and self.metric_for_best_model):
            raise ValueError("load_best_model_at_end needs eval_steps and metric_for_best_model.")
