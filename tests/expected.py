"""Facts the tests share, written once: what every checkpoint's metadata JSON must hold."""

# The model card and the app read these from checkpoints/*.json; training writes them every epoch.
METADATA_KEYS = frozenset(
    {
        "test_accuracy",
        "epochs",
        "seconds_per_epoch",
        "train_seconds",
        "device",
        "torch_version",
        "seed",
        "command",
    }
)
