"""Perplexity per token and bits per byte of a saved causal LM on the texts, each scored as EOS, text, EOS (testbed.metrics.perplexity)."""
import datasets
import evaluate

from testbed.metrics import perplexity

_INPUTS = """
Args:
    data (list of str): documents to score.
    model (str): a saved model directory (AutoModelForCausalLM).
    tokenizer (str, optional): the tokenizer directory; default: the run's, or the model's own.
    batch_size (int): windows per forward pass (default 32).
    device (str, optional): default cuda when available, else cpu.
Returns:
    ppl (per token, the closing end-of-document included) and bpb (bits per UTF-8 byte).
"""


class CollapsePerplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description=__doc__, citation="", inputs_description=_INPUTS,
                                   features=datasets.Features({"data": datasets.Value("string")}))

    def _compute(self, data, model, tokenizer=None, batch_size=32, device=None):
        import torch

        from testbed.metrics.files import find_tokenizer
        from testbed.model import load_model
        from testbed.tokenizer import encode, load_tokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        tok = load_tokenizer(find_tokenizer(model, tokenizer))
        ids = encode(tok, list(data))
        nll = perplexity.document_nll(load_model(model, device), ids, tok.eos_token_id, batch_size)
        return {"ppl": perplexity.perplexity(nll, ids), "bpb": perplexity.bits_per_byte(nll, data)}
