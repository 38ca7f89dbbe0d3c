"""bench/launch/memory.py against a hand computation of its docstring's formula."""


from bench.cli import main
from bench.launch.memory import GPUS, OVERHEAD, estimate, too_big
from bench.run.config import resolve
from bench.run.matrix import Cell


def nano(**train):
    return resolve({"scale": "nano", "activation": "swiglu", "norm": "pre",
                    **{f"train.{k}": v for k, v in train.items()}})


def test_nano_swiglu_by_hand():
    # nano: d=40, L=4, 4 heads (kv = d), SwiGLU h=108, V=256 untied, b=8, s=64, fp32
    attention = 4 * (2 * 40 * 40 + 2 * 40 * 40)  # q, o: d x d; k, v: d x kv
    ffn = 4 * 3 * 40 * 108
    norms = (4 * 2 + 1) * 40
    embedding = 2 * 256 * 40
    P = attention + ffn + norms + embedding
    assert P == 98280
    acts = 8 * 64 * 4 * (6 * 40 + 2 * 40 + 3 * 108) * 4 + 8 * 64 * 256 * (4 + 4)
    e = estimate(nano())
    assert (e.weights, e.gradients, e.optimizer) == (4 * P, 4 * P, 8 * P)
    assert e.activations == acts == 6_324_224
    assert e.total == 16 * P + acts + OVERHEAD
    # without a fused attention kernel the probabilities b * heads * s^2 * L are kept too
    assert estimate(nano(), flash=False).activations == acts + 8 * 4 * 64 * 64 * 4 * 4


def test_precision_and_fsdp_sharding():
    P = 98280
    e = estimate(nano(precision="bf16-true"))
    assert (e.weights, e.optimizer) == (2 * P, 4 * P)
    assert e.activations == 8 * 64 * 4 * 644 * 2 + 8 * 64 * 256 * (2 + 4)
    mixed = estimate(nano(precision="bf16-mixed"))
    assert mixed.weights == 4 * P and mixed.activations == e.activations
    fsdp = estimate(nano(strategy="fsdp", devices="4"))
    assert fsdp.weights == 4 * P // 4 and fsdp.optimizer == 8 * P // 4
    assert estimate(nano(strategy="ddp", devices="4")).weights == 4 * P  # DDP replicates


def test_too_big_names_the_cell():
    big = resolve({"scale": "gpas-7b", "activation": "swiglu", "norm": "pre"})
    cells = [Cell("nano", nano(), ()), Cell("7b", big, ())]
    # 7B: 16 bytes/param of fp32 weights, grads and Adam states alone are > 100 GB
    assert [cid for cid, _ in too_big(cells, "h100-80gb")] == ["7b"]
    assert too_big(cells, None) == []
    assert estimate(big).total > GPUS["h200-141gb"]


def test_plan_gpu_flag(capsys):
    assert main(["plan", "--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--gpu", "t4-16gb"]) == 0
    assert "fits t4-16gb" in capsys.readouterr().out
    assert main(["plan", "--scale", "nano", "--gpu", "h100"]) == 2
    assert "h100-80gb" in capsys.readouterr().err
