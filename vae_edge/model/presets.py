"""Architecture presets: plain dicts, so they read like a table and round-trip through JSON."""

PRESETS: dict[str, dict] = {
    "micro": {"filters": [16, 32], "latent_dim": 32, "blocks_per_stage": 1},
    "small": {"filters": [32, 64], "latent_dim": 64, "blocks_per_stage": 1},
    "medium": {"filters": [32, 64, 128], "latent_dim": 128, "blocks_per_stage": 1},
    "large": {"filters": [64, 128, 256], "latent_dim": 256, "blocks_per_stage": 2},
    "xlarge": {"filters": [64, 128, 256, 512], "latent_dim": 512, "blocks_per_stage": 2},
}


def get_preset(name: str) -> dict:
    """Return a copy of preset `name`; an unknown name lists the valid ones."""
    from vae_edge.errors import BadInputError

    if name not in PRESETS:
        raise BadInputError(
            f"unknown variant {name!r}; choose one of: {', '.join(PRESETS)}"
        )
    return {key: (list(value) if isinstance(value, list) else value) for key, value in PRESETS[name].items()}
