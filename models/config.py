"""TransformerConfig: one flat dataclass for the model. Each field's docstring is its CLI help."""

from __future__ import annotations

from dataclasses import dataclass

from .activations import CLIP_VARIANTS
from .gpas import GATE_ACTS, POSITIONS
from .names import check_choice
from .registry import ACTIVATIONS, NORMS, SCHEMES


@dataclass
class TransformerConfig:
    vocab_size: int = 256
    """Vocabulary size (256 for the byte tokenizer; set from the tokenizer at run time)."""
    block_size: int = 128
    """Longest sequence the model is trained on (RoPE needs no table, so this only bounds data)."""
    d_model: int = 128
    """Residual stream width d."""
    n_layers: int = 4
    """Number of transformer blocks L."""
    n_heads: int = 4
    """Attention heads; must divide d_model, and head_dim = d_model / n_heads must be even (RoPE)."""
    n_kv_heads: int | None = None
    """Key/value heads for grouped-query attention (must divide n_heads); None = n_heads."""
    ref_intermediate_size: int = 344
    """The scale's SwiGLU intermediate size h: the parameter budget every activation is matched to."""
    intermediate_size: int | None = None
    """Explicit FFN width; None = parameter-matched to ref_intermediate_size (models/sizing.py)."""
    ffn_multiple_of: int = 1
    """Round a matched intermediate size to a multiple of this (1 = exact match)."""
    ffn: str = "dense"
    """FFN kind: 'dense' (one FFN) or 'moe' (top-k routed experts, each the activation's FFN; models/moe.py)."""
    moe_experts: int = 64
    """moe: routed experts E per layer (OLMoE: 64)."""
    moe_top_k: int = 8
    """moe: experts each token is routed to, k <= E (OLMoE: 8)."""
    moe_shared_experts: int = 0
    """moe: always-on shared experts, each the size of a routed one (Ling/DeepSeek style; OLMoE: 0)."""
    moe_softmax: str = "before"
    """moe: router softmax 'before' top-k (OLMoE, weights not renormalised) or 'after' (Mixtral)."""
    moe_lb_weight: float = 0.01
    """moe: weight of the load-balancing loss E * sum_i f_i P_i (OLMoE/PolyCom: 0.01)."""
    moe_z_weight: float = 0.001
    """moe: weight of the router z-loss mean_t logsumexp(logits_t)^2 (OLMoE/PolyCom: 0.001)."""
    moe_capacity_factor: float | None = None
    """moe: expert capacity ceil(f * tokens * k / E), overflow dropped and counted; None = dropless (OLMoE)."""
    moe_ref_intermediate_size: int | None = None
    """moe: the SwiGLU expert size every activation's expert is matched to (OLMoE: 1024); None =
    ref_intermediate_size // moe_top_k (active FFN parameters as the dense model's)."""
    moe_intermediate_size: int | None = None
    """moe: explicit expert width; None = parameter-matched to moe_ref_intermediate_size."""
    moe_grouped_mm: str = "auto"
    """moe: experts as one grouped matmul: 'auto' (training on CUDA SM80+ in bf16), 'on', 'off' (loop)."""
    activation: str = "swiglu"
    """FFN activation, a name from models.ACTIVATIONS (see `bench list`)."""
    gelu_approximate: str = "none"
    """gelu/geglu: 'none' (exact erf) or 'tanh'."""
    clip_limit: float = 7.0
    """swiglu_clip: the clamp limit L."""
    clip_variant: str = "input"
    """swiglu_clip: 'input' silu(min(g,L))*clamp(u), 'output' min(silu(g),L)*clamp(u), 'gptoss'."""
    poly_order: int = 3
    """polyrelu/polynorm: polynomial order r (2, 3 or 4)."""
    polynorm_form: str = "rms"
    """polynorm: 'rms' (reference code, default) or 'l2' (the paper's text: x^i / ||x^i||_2)."""
    polynorm_recompute: bool = True
    """polynorm: recompute x^2, x^3 in backward instead of storing them (the reference checkpoints)."""
    powlu_m: float = 3.0
    """powlu: exponent parameter m, 0 < m < 10."""
    norm_layer: str = "rmsnorm"
    """Normalization layer: 'rmsnorm' or 'layernorm' (both computed in fp32), or a registered one."""
    norm_eps: float = 1e-6
    """Epsilon of every normalization layer."""
    scheme: str = "pre"
    """Residual/normalization scheme: pre, post, sandwich, deepnorm, mixln, lns or a registered one (models.SCHEMES)."""
    gpas: bool = False
    """Add GPAS (gradient-preserving activation scaling) to the scheme."""
    gpas_act: str = "silu"
    """GPAS gate activation: silu, identity, tanh, relu, leaky_relu, silu_beta."""
    gpas_beta: float = 8.0
    """GPAS silu_beta: the beta of a * sigmoid(beta a)."""
    gpas_position: str = "after_sublayer"
    """GPAS position (pre-style schemes): after_sublayer, before_sublayer, after_norm, after_fn. Mix-LN's
    post-LN layers keep GPAS on the shortcut whatever the position."""
    gpas_stop_grad: bool = True
    """GPAS stop-gradient on the subtracted term (False = the paper's eq. 12 control)."""
    gpas_learnable: bool = True
    """GPAS gates are trained (False = fixed at gpas_init)."""
    gpas_init: float = 0.0
    """GPAS gate initial value a_l (0 makes GPAS the identity at init)."""
    mixln_post_fraction: float = 0.25
    """mixln: fraction of layers (the first floor(L * f)) that are post-LN."""
    lns_mode: str = "gain"
    """lns: 'gain' folds 1/sqrt(l) into the initial norm gain (GPAS code); 'fixed' multiplies by it."""
    deepnorm_init: str = "all"
    """DeepNorm init: 'all' (deepnorm and deepnorm+gpas), 'reference' (plain deepnorm only, as the
    GPAS code does), 'off'."""
    init_std: float = 0.02
    """Std of the normal init of every linear and the embedding."""
    scaled_embed: bool = False
    """'Scaled embed' (Spike No More): embedding init std sqrt(2/5), no forward multiplier."""
    scaled_out_proj: bool = False
    """Init o and down projections with std init_std / sqrt(2 L) (GPT-2)."""
    tie_embeddings: bool = False
    """Share the embedding and LM head weights (off: the papers untie them)."""
    rope_base: float = 10000.0
    """RoPE base theta."""

    def __post_init__(self):
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    def activation_options(self) -> dict:
        """The config fields that the chosen activation takes, under its constructor's names."""
        return {
            "gelu": {"approximate": self.gelu_approximate},
            "geglu": {"approximate": self.gelu_approximate},
            "swiglu_clip": {"limit": self.clip_limit, "variant": self.clip_variant},
            "polyrelu": {"order": self.poly_order},
            "polynorm": {"order": self.poly_order, "form": self.polynorm_form,
                         "recompute": self.polynorm_recompute},
            "powlu": {"m": self.powlu_m},
        }.get(self.activation, {})

    def validate(self) -> None:
        """One clear error per impossible setting, before anything is built."""
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("scheme", self.scheme, SCHEMES)
        check_choice("norm layer", self.norm_layer, NORMS)
        check_choice("GPAS gate activation", self.gpas_act, GATE_ACTS)
        check_choice("GPAS position", self.gpas_position, POSITIONS)
        check_choice("clip variant", self.clip_variant, CLIP_VARIANTS)
        check_choice("lns mode", self.lns_mode, ["gain", "fixed"])
        check_choice("deepnorm init", self.deepnorm_init, ["all", "reference", "off"])
        check_choice("polynorm form", self.polynorm_form, ["rms", "l2"])
        check_choice("gelu approximation", self.gelu_approximate, ["none", "tanh"])
        self.validate_moe()
        for name in ("vocab_size", "block_size", "d_model", "n_layers", "n_heads", "ref_intermediate_size",
                     "ffn_multiple_of"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} does not divide d_model={self.d_model}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim = d_model / n_heads = {self.head_dim} must be even for RoPE")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_kv_heads={self.kv_heads} does not divide n_heads={self.n_heads}")
        if self.intermediate_size is not None and self.intermediate_size < 1:
            raise ValueError(f"intermediate_size must be positive, got {self.intermediate_size}")
        if self.poly_order not in (2, 3, 4):
            raise ValueError(f"poly_order must be 2, 3 or 4, got {self.poly_order}")
        if not 0 < self.powlu_m < 10:
            raise ValueError(f"powlu_m must lie in (0, 10), got {self.powlu_m}")
        if not 0 <= self.mixln_post_fraction <= 1:
            raise ValueError(f"mixln_post_fraction must lie in [0, 1], got {self.mixln_post_fraction}")
        if self.gpas and self.gpas_position != "after_sublayer" and self.scheme in ("post", "deepnorm"):
            raise ValueError(f"gpas_position={self.gpas_position!r} applies to pre-style schemes only; "
                             f"{self.scheme}+gpas puts GPAS on the shortcut (use after_sublayer)")

    def validate_moe(self) -> None:
        from .moe import GROUPED_MODES, SOFTMAX_ORDERS

        check_choice("ffn", self.ffn, ["dense", "moe"])
        check_choice("moe softmax order", self.moe_softmax, SOFTMAX_ORDERS)
        check_choice("moe grouped_mm mode", self.moe_grouped_mm, GROUPED_MODES)
        if self.moe_experts < 1:
            raise ValueError(f"moe_experts must be at least 1, got {self.moe_experts}")
        if not 1 <= self.moe_top_k <= self.moe_experts:
            raise ValueError(f"moe_top_k must lie in [1, moe_experts={self.moe_experts}], got {self.moe_top_k}")
        if self.moe_shared_experts < 0:
            raise ValueError(f"moe_shared_experts must be >= 0, got {self.moe_shared_experts}")
        if self.moe_capacity_factor is not None and not self.moe_capacity_factor > 0:
            raise ValueError(f"moe_capacity_factor must be > 0 (or None for no dropping), "
                             f"got {self.moe_capacity_factor}")
        if self.moe_lb_weight < 0 or self.moe_z_weight < 0:
            raise ValueError(f"moe_lb_weight and moe_z_weight must be >= 0, "
                             f"got {self.moe_lb_weight}, {self.moe_z_weight}")
        for name in ("moe_ref_intermediate_size", "moe_intermediate_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive (or None), got {getattr(self, name)}")

    def moe_options(self) -> dict:
        """MoE constructor options (models/moe.py) from the moe_* fields."""
        return {"n_experts": self.moe_experts, "top_k": self.moe_top_k, "n_shared": self.moe_shared_experts,
                "softmax": self.moe_softmax, "capacity_factor": self.moe_capacity_factor,
                "grouped": self.moe_grouped_mm}
