"""Decoders in named sizes, GPT-2 or Llama, saved and loaded in Hugging Face format.

GPT-2 by default: at these sizes the two train alike, GPT-2 has the fewest
moving parts (learned positions, LayerNorm, GELU), and it is the architecture
nanoGPT and many published collapse loops use. Llama (RoPE, RMSNorm, SwiGLU)
is what Gerstgrasser et al. ran their accumulate-or-replace study on, and
what most current small models look like. A preset gives both families the
same depth, width, heads and context; Llama's SwiGLU is sized to GPT-2's MLP
parameter count.
"""
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from testbed import TestbedError, first_line
from testbed.config import ModelConfig, check_registry


def _gpt2(dims: dict, ids: dict):
    return GPT2LMHeadModel(GPT2Config(
        n_positions=dims["context"], n_embd=dims["n_embd"], n_layer=dims["n_layer"], n_head=dims["n_head"],
        # GPT-2's tanh GELU, from torch's C++ kernel rather than transformers' Python one (3x faster).
        activation_function="gelu_pytorch_tanh",
        # Dropout only slows a model that sees each token once or twice.
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **ids))


def _llama(dims: dict, ids: dict):
    # SwiGLU has three matrices where GPT-2's MLP has two of 4 x n_embd: 8/3 x n_embd matches its parameters.
    hidden = -(-8 * dims["n_embd"] // 3 // 32) * 32
    return LlamaForCausalLM(LlamaConfig(
        hidden_size=dims["n_embd"], intermediate_size=hidden, num_hidden_layers=dims["n_layer"],
        num_attention_heads=dims["n_head"], num_key_value_heads=dims["n_head"],
        max_position_embeddings=dims["context"], tie_word_embeddings=True, attention_dropout=0.0, **ids))


# model.family -> a function (preset dims, token ids) -> a new transformers model. A new family is a function
# here and its name in ModelConfig.family; whatever it builds must save and load with AutoModelForCausalLM.
FAMILIES = {"gpt2": _gpt2, "llama": _llama}
check_registry(FAMILIES, ModelConfig, "model.family")


def build_model(cfg: ModelConfig, vocab_size: int, eos_id: int):
    ids = dict(vocab_size=vocab_size, bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id)
    return FAMILIES[cfg.family](cfg.dims(), ids)


def context_length(model) -> int:
    """The longest sequence the model takes, whatever its family calls it."""
    config = model.config
    return config.n_positions if hasattr(config, "n_positions") else config.max_position_embeddings


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(model, path: str | Path) -> None:
    model.save_pretrained(str(path), safe_serialization=True)


def load_model(path: str | Path, device: torch.device | str = "cpu"):
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as e:  # transformers' words for a folder that is not a saved model
        reason = first_line(e)
        raise TestbedError(f"{path}: could not be loaded as a model ({reason}); give a folder saved by testbed, "
                           "such as RUN/gen_002/model") from None
    return model.to(device)
