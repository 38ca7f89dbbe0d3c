"""A trained cell as an lm-evaluation-harness model (``lm_eval.api.model.LM``).

    from bench.results.lm_adapter import CellLM
    lm = CellLM.from_cell("results/nano-precision/<cell id>")      # needs `bench run --save-weights`
    lm_eval.simple_evaluate(model=lm, tasks=[...], task_manager=...)

Registered with lm-eval as ``llm-arch-bench`` (``--model llm-arch-bench --model_args cell=PATH``).

Scoring, through the cell's own tokenizer (the one saved beside its weights):
- loglikelihood(context, continuation) = sum over the continuation tokens c_i of
  log softmax(logits(EOS + context + c_<i))[c_i], and whether every c_i is the argmax. Every text
  starts after the EOS token, as every document does in training (the data module puts EOS
  between documents). Trailing spaces of the context move to the continuation and the pair is
  encoded whole, then split at the context's length (what lm-eval's TemplateLM does). Sequences
  longer than the model's block_size + 1 keep their last tokens.
- loglikelihood_rolling(text): EOS + text cut into lm-eval's disjoint rolling windows of block_size
  predicted tokens (utils.get_rolling_token_windows with context_len=1, as lm-eval's own HF model:
  each token is predicted exactly once; the last window gets a full block of context), summed.
- generate_until: not supported (cells are scored by log-likelihood only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window


@register_model("llm-arch-bench")
class CellLM(LM):
    def __init__(self, cell: str | None = None, model=None, tokenizer=None, batch_size: int | str = 16,
                 device: str = "cpu", **kwargs):
        super().__init__()
        if cell is not None:
            from .weights import load_cell

            model, tokenizer, _ = load_cell(cell, device)
        if model is None or tokenizer is None:
            raise ValueError("CellLM needs cell=PATH (a cell folder with saved weights) or model= and tokenizer=")
        self.model, self.tok = model.to(device).eval(), tokenizer
        self._device = torch.device(device)
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 16
        self.max_length = int(model.cfg.block_size)

    @classmethod
    def from_cell(cls, cell, **kwargs) -> CellLM:
        return cls(cell=str(cell), **kwargs)

    # -- tokens

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.tok.encode(context + continuation)
        ctx = self.tok.encode(context)
        return [self.tok.eos_id] + ctx, whole[len(ctx):]

    # -- scoring

    @torch.no_grad()
    def score(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(sum log p(continuation | context), greedy?) for (context tokens, continuation tokens)
        pairs, batched with right padding (causal attention: padding after a row changes nothing)."""
        out = []
        for i in range(0, len(pairs), self.batch_size):
            chunk = pairs[i:i + self.batch_size]
            seqs = [(ctx + cont)[-(self.max_length + 1):] for ctx, cont in chunk]
            width = max(len(s) - 1 for s in seqs)
            x = torch.zeros(len(seqs), width, dtype=torch.long)
            for r, s in enumerate(seqs):
                x[r, :len(s) - 1] = torch.tensor(s[:-1])
            logprobs = F.log_softmax(self.model(x.to(self._device)).float(), dim=-1)
            for r, ((_, cont), s) in enumerate(zip(chunk, seqs)):
                n = len(cont)
                if n == 0:
                    out.append((0.0, True))
                    continue
                pos = torch.arange(len(s) - 1 - n, len(s) - 1, device=self._device)
                target = torch.tensor(cont, device=self._device)
                lp = logprobs[r, pos]
                out.append((lp.gather(-1, target[:, None]).sum().item(), bool((lp.argmax(-1) == target).all())))
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [self.encode_pair(*req.args) for req in requests]
        results = self.score(pairs)
        for req, res in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", req.args, res)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        out = []
        for req in requests:
            (text,) = req.args[:1]
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                self.tok.encode(text), prefix_token=self.tok.eos_id, max_seq_len=self.max_length, context_len=1)]
            total = sum(lp for lp, _ in self.score(windows))
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
            out.append(total)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        raise NotImplementedError("llm-arch-bench cells are scored by log-likelihood only: use multiple-choice or "
                                  "perplexity tasks (output_type multiple_choice / loglikelihood / "
                                  "loglikelihood_rolling), not generative ones")

    @property
    def tokenizer_name(self) -> str:
        return f"llm-arch-bench/{self.tok.name}/{self.tok.fingerprint[:12]}"
