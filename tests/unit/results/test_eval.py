"""Downstream evaluation through lm-evaluation-harness: the adapter's log-likelihoods against our own
computation, and `bench eval` on a multiple-choice task whose data the test writes."""

import json

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install '.[eval]')")

from lm_eval.api.instance import Instance  # noqa: E402

from bench.cli import main  # noqa: E402
from bench.results.lm_adapter import CellLM  # noqa: E402
from bench.results.weights import save_cell  # noqa: E402
from bench.run.config.presets import resolve  # noqa: E402
from datamodules.tokenizers import ByteTokenizer  # noqa: E402
from models import Transformer, TransformerConfig  # noqa: E402


def tiny_model(block_size=64):
    torch.manual_seed(0)
    return Transformer(TransformerConfig(d_model=32, n_layers=2, n_heads=2, ref_intermediate_size=64,
                                         block_size=block_size)).eval()


def by_hand(model, context: str, continuation: str) -> float:
    """sum_i log softmax(model(EOS + context + cont_<i))[cont_i], byte tokens."""
    ids = [0] + list(context.encode()) + list(continuation.encode())
    n = len(continuation.encode())
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor([ids[:-1]])).double(), -1)[0]
    return sum(logp[len(ids) - 1 - n + i, ids[len(ids) - n + i]].item() for i in range(n))


def req(kind, *args):
    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


def test_adapter_loglikelihood_equals_our_computation():
    model = tiny_model()
    lm = CellLM(model=model, tokenizer=ByteTokenizer(), batch_size=2)
    pairs = [("The sky is", " blue"), ("Grass is ", "green"), ("a", " much longer continuation here")]
    got = lm.loglikelihood([req("loglikelihood", c, x) for c, x in pairs])
    for (ctx, cont), (lp, greedy) in zip(pairs, got):
        # a trailing space of the context moves to the continuation (lm-eval's convention)
        n = len(ctx) - len(ctx.rstrip())
        ctx, cont = (ctx[:-n], ctx[-n:] + cont) if n else (ctx, cont)
        assert lp == pytest.approx(by_hand(model, ctx, cont), abs=1e-4)
        assert isinstance(greedy, bool)
    (rolling,) = lm.loglikelihood_rolling([req("loglikelihood_rolling", "hello world")])
    assert rolling == pytest.approx(by_hand(model, "", "hello world"), abs=1e-4)
    with pytest.raises(NotImplementedError, match="log-likelihood only"):
        lm.generate_until([req("generate_until", "x", {})])


def test_rolling_loglikelihood_scores_every_token_once_past_the_block_size():
    model = tiny_model(block_size=16)
    lm = CellLM(model=model, tokenizer=ByteTokenizer())
    text = "abcdefghijklmnopqrstuvwxyz0123456789"  # 36 tokens > 16
    (total,) = lm.loglikelihood_rolling([req("loglikelihood_rolling", text)])
    ids = [0] + list(text.encode())
    expected = 0.0
    with torch.no_grad():  # lm-eval's windows: 16 tokens predicted from EOS + first 15, then chunks of 16
        for start in range(0, 36, 16):      # with the 16 tokens before each chunk's last one as input
            end = min(start + 16, 36)
            inp = ids[max(0, end - 16):end]
            logp = F.log_softmax(model(torch.tensor([inp])).double(), -1)[0]
            for j in range(start + 1, end + 1):
                expected += logp[j - 1 - max(0, end - 16), ids[j]].item()
    assert total == pytest.approx(expected, abs=1e-3)


def write_task(folder):
    docs = [{"question": "The sky is", "choices": ["blue", "green", "loud"], "label": 0},
            {"question": "Grass is", "choices": ["red", "green"], "label": 1},
            {"question": "Snow is", "choices": ["white", "black"], "label": 0},
            {"question": "Fire is", "choices": ["cold", "hot"], "label": 1}]
    folder.mkdir()
    (folder / "mc.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "tiny_mc.yaml").write_text(
        "task: tiny_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {folder / 'mc.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: label\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    return docs


def test_bench_eval_adds_accuracies_to_records_and_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    docs = write_task(tmp_path / "tasks")
    model = tiny_model()
    cfg = resolve({"scale": "nano"})
    cell = tmp_path / "res" / "m" / "cell-a"
    save_cell(cell, model, cfg, ByteTokenizer())
    record = {"id": "cell-a", "matrix": "m", "status": "ok", "activation": "swiglu", "norm": "pre", "scale": "nano",
              "seed": 0, "precision": "32-true", "config": cfg.to_dict(), "metrics": {"val_ppl": 10.0},
              "params": {"total": 1, "non_embedding": 1}, "data": {}}
    (cell / "record.json").write_text(json.dumps(record))
    code = main(["eval", str(tmp_path / "res" / "m"), "--tasks", "tiny_mc", "--include-path",
                 str(tmp_path / "tasks"), "--quiet"])
    assert code == 0
    rec = json.loads((cell / "record.json").read_text())
    # expected accuracy: the choice with the highest log-likelihood of " " + choice after the question
    right = sum(max(range(len(d["choices"])), key=lambda i: by_hand(model, d["question"], " " + d["choices"][i]))
                == d["label"] for d in docs)
    assert rec["eval"]["tiny_mc"]["acc"] == pytest.approx(right / len(docs))
    assert rec["eval"]["tiny_mc"]["n"] == 4 and rec["eval_meta"]["tiny_mc"]["lm_eval_version"]
    board = (tmp_path / "res" / "m" / "leaderboard.md").read_text()
    assert "tiny_mc:acc" in board and "Downstream accuracy" in board


def test_bench_eval_names_an_unknown_task_in_one_line(tmp_path, capsys):
    write_task(tmp_path / "tasks")
    cell = tmp_path / "res" / "m" / "cell-a"
    cell.mkdir(parents=True)
    (cell / "record.json").write_text(json.dumps({"id": "cell-a", "status": "ok", "scale": "nano", "seed": 0,
                                                  "activation": "swiglu", "norm": "pre", "metrics": {"val_ppl": 9.0}}))
    code = main(["eval", str(tmp_path / "res" / "m"), "--tasks", "tiny_mcq", "--include-path", str(tmp_path / "tasks")])
    err = capsys.readouterr().err
    assert code == 2 and "tiny_mc" in err and len(err.strip().splitlines()) == 1


def test_shipped_local_task_yamls_read_local_files(tmp_path, monkeypatch):
    """configs/eval/local_arc_easy.yaml and local_hellaswag.yaml over a few rows in the documented layout."""
    import lm_eval

    from bench.results.eval import ROOT_EVAL_TASKS, offline, parse_results, task_manager

    offline()
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    arc = [{"id": str(i), "question": q, "choices": {"text": c, "label": ["A", "B", "C"]}, "answerKey": k}
           for i, (q, c, k) in enumerate([("Which is hot?", ["ice", "fire", "snow"], "B"),
                                          ("Which is wet?", ["water", "sand", "dust"], "A")])]
    hs = [{"activity_label": "Cooking", "ctx_a": "A man cuts onions.", "ctx_b": "he", "label": "1",
           "endings": ["flies away [title] up.", "puts them in a pan.", "sings.", "sleeps."]}] * 2
    for name, rows, splits in (("arc_easy", arc, ("train", "test")), ("hellaswag", hs, ("train", "validation"))):
        (tmp_path / "data" / "eval" / name).mkdir(parents=True)
        for split in splits:
            (tmp_path / "data" / "eval" / name / f"{split}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in rows))
    model = tiny_model()
    lm = CellLM(model=model, tokenizer=ByteTokenizer())
    out = parse_results(lm_eval.simple_evaluate(model=lm, tasks=["local_arc_easy", "local_hellaswag"],
                                                task_manager=task_manager(str(ROOT_EVAL_TASKS)), bootstrap_iters=0,
                                                log_samples=False))
    assert out["local_arc_easy"]["n"] == 2 and out["local_hellaswag"]["n"] == 2
    right = sum(max(range(3), key=lambda i: by_hand(model, f"Question: {d['question']}\nAnswer:",
                                                    " " + d["choices"]["text"][i])) == "ABC".index(d["answerKey"])
                for d in arc)
    assert out["local_arc_easy"]["acc"] == pytest.approx(right / 2)
    assert 0 <= out["local_hellaswag"]["acc_norm"] <= 1
