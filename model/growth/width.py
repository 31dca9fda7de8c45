"""Width growth of decoder parameters (pure dicts, `nnx.to_pure_dict` layout): d_model, query heads, key/value
heads and d_ff grow; head width stays (so RoPE is untouched) and new units come after the old ones.

Every weight is stored (inputs x outputs). Axes live in four spaces: D (residual width), Q (query heads x head
width), KV (key/value heads x head width), F (SwiGLU hidden). Operators (Du et al. 2024, App. A):
- direct (copy/split): new units copy old ones; rows read from a copied unit are divided by its copy count, so
  linear maps are preserved, but every RMSNorm now averages over the widened vector (the paper's RMSNorm effect).
- learn (LiGO): W' = B_in W B_out^T with learned B per space (head spaces per whole head), B = [I; noise].
- zero: old inputs feed new outputs with zero weights, new embedding columns are zero, norm gains scaled by
  sqrt(d/D): the function is preserved. random: new weights random, new outputs masked (mask ramps 0 -> 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ladderlab.model.config import ModelConfig

# parameter name -> the space of each axis (None: an axis width growth leaves alone)
AXES = {"embed": (None, "D"), "head": ("D", None), "wq": ("D", "Q"), "wk": ("D", "KV"), "wv": ("D", "KV"),
        "wo": ("Q", "D"), "w_gate": ("D", "F"), "w_up": ("D", "F"), "w_down": ("F", "D"), "attn_norm": ("D",),
        "mlp_norm": ("D",), "final_norm": ("D",), "q_norm": ("Q",), "k_norm": ("KV",)}
SPACES = ("D", "Q", "KV", "F")


def param_name(path: tuple) -> str:
    """'wq' for ('blocks', 0, 'attn', 'wq'); a norm's gain is named by its module: ('final_norm', 'scale')."""
    keys = [getattr(k, "key", getattr(k, "idx", k)) for k in path]
    return keys[-2] if keys[-1] == "scale" else keys[-1]


def units(cfg: ModelConfig) -> dict[str, int]:
    """Units per space: D and F count channels, Q and KV count heads (of cfg.head_dim channels each)."""
    return {"D": cfg.d_model, "Q": cfg.n_heads, "KV": cfg.kv_heads, "F": cfg.d_ff}


def _channels(unit_index: np.ndarray, space: str, head_dim: int) -> np.ndarray:
    """Unit indices -> channel indices (a head stands for its head_dim channels)."""
    if space in ("Q", "KV"):
        return (unit_index[:, None] * head_dim + np.arange(head_dim)).reshape(-1)
    return unit_index


def copy_sources(src: ModelConfig, dst: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """For each space, the old channel every new channel copies (old channels copy themselves).

    New D and F units and new key/value heads copy randomly chosen old ones (without repeats while possible); the
    G query heads of a new key/value head copy the query heads of the head it copies, so attention is unchanged.
    """
    rng, old, new = np.random.default_rng(seed), units(src), units(dst)

    def pick(space: str) -> np.ndarray:
        extra = new[space] - old[space]
        chosen = rng.choice(old[space], extra, replace=extra > old[space]) if extra else np.zeros(0, int)
        return np.concatenate([np.arange(old[space]), chosen])

    d, f, kv = pick("D"), pick("F"), pick("KV")
    group = src.n_heads // src.kv_heads
    q = (kv[:, None] * group + np.arange(group)).reshape(-1)
    return {"D": d, "F": f, "KV": _channels(kv, "KV", src.head_dim), "Q": _channels(q, "Q", src.head_dim)}


def direct(params: dict, src: ModelConfig, dst: ModelConfig, seed: int = 0) -> dict:
    """G_direct in width: copy outputs, split inputs (divide by the copy count)."""
    sources = copy_sources(src, dst, seed)
    share = {s: 1.0 / np.bincount(i)[i] for s, i in sources.items()}  # 1 / copies of each new channel's source

    def grow(path, w):
        spaces = AXES[param_name(path)]
        if len(spaces) == 1:  # norm gain: copied
            return w[sources[spaces[0]]]
        rows_in, cols_out = spaces
        if rows_in is not None:
            w = w[sources[rows_in]] * share[rows_in][:, None].astype(w.dtype)
        if cols_out is not None:
            w = w[:, sources[cols_out]]
        return w

    return jax.tree_util.tree_map_with_path(grow, params)


def learn_init(src: ModelConfig, dst: ModelConfig, seed: int = 0) -> dict[str, jax.Array]:
    """LiGO's starting maps B (new units x old units) per space: identity on old units, N(0, 1/new) below."""
    key, old, new = jax.random.key(seed), units(src), units(dst)
    maps = {}
    for space in SPACES:
        key, sub = jax.random.split(key)
        noise = jax.random.normal(sub, (new[space] - old[space], old[space])) * (1.0 / new[space]) ** 0.5
        maps[space] = jnp.concatenate([jnp.eye(old[space]), noise])
    return maps


def learn_apply(params: dict, maps: dict[str, jax.Array], head_dim: int) -> dict:
    """G_learn in width: every axis in a space is mapped by that space's B (heads by B kron I)."""
    eye = jnp.eye(head_dim)
    channel = {s: jnp.kron(b, eye) if s in ("Q", "KV") else b for s, b in maps.items()}

    def grow(path, w):
        spaces = AXES[param_name(path)]
        if len(spaces) == 1:
            return channel[spaces[0]] @ w
        rows_in, cols_out = spaces
        if rows_in is not None:
            w = channel[rows_in] @ w
        if cols_out is not None:
            w = w @ channel[cols_out].T
        return w

    return jax.tree_util.tree_map_with_path(grow, params)


def pad(params: dict, fresh: dict, src: ModelConfig, dst: ModelConfig, zero_fan_in: bool) -> tuple[dict, dict]:
    """G_zero (zero_fan_in) or G_random in width: new entries from `fresh` (a target-shaped init, or zeros when
    growing optimizer moments). Returns (params, masks): the masks hide new outputs (G_random uses them).

    Old channels of each norm gain are scaled by sqrt(old width / new width): the RMS over a vector padded with
    zeros is that much smaller, so the norm's output on old channels is unchanged (up to the norm's eps, which it
    adds to a smaller mean square).
    """
    old = {s: n * (src.head_dim if s in ("Q", "KV") else 1) for s, n in units(src).items()}

    def grow(path, w, w_new):
        spaces = AXES[param_name(path)]
        if len(spaces) == 1:
            alpha = (old[spaces[0]] / w_new.shape[0]) ** 0.5
            return w_new.at[: old[spaces[0]]].set(alpha * w), jnp.ones((), w.dtype)
        rows, cols = (old[s] if s else n for s, n in zip(spaces, w_new.shape))
        out = w_new.at[:rows, :cols].set(w)
        if zero_fan_in:
            out = out.at[:rows, cols:].set(0.0)  # new outputs see nothing of old inputs (new embedding columns: 0)
        mask = jnp.ones(w_new.shape, w.dtype).at[:, cols:].set(0.0)
        return out, mask

    pairs = jax.tree_util.tree_map_with_path(grow, params, fresh)
    is_pair = lambda x: isinstance(x, tuple)  # noqa: E731
    return (jax.tree.map(lambda p: p[0], pairs, is_leaf=is_pair), jax.tree.map(lambda p: p[1], pairs, is_leaf=is_pair))
