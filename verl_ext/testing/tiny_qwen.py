"""A tiny, randomly initialised Qwen2.5-VL checkpoint built offline.

The tokenizer is a byte-level BPE trained on a few sentences with the ``tokenizers`` library and
carries Qwen2.5-VL's special tokens at Qwen's ids' order; the processor is the real
``Qwen2_5_VLProcessor`` with the recipe's chat template; the model is
``Qwen2_5_VLForConditionalGeneration`` with tiny sizes. Used by the tests, ``examples/run_tiny_cpu.sh``
and ``examples/smoke_gpu.sh``.

    python -m verl_ext.testing.tiny_qwen --out /tmp/tiny-qwen2.5-vl
"""

from __future__ import annotations

import argparse
from pathlib import Path

from verl_ext.config import CHAT_TEMPLATE
from verl_ext.geometry import FACTOR
from verl_ext.special_tokens import ADDED_TOKENS, SPECIAL_TOKENS

#: Small enough for a 2-core CPU, large enough for the processor (min 4 tokens of 28x28 px).
TINY_MIN_PIXELS = 4 * FACTOR * FACTOR
TINY_MAX_PIXELS = 64 * FACTOR * FACTOR

_CORPUS = [
    "<think>The question asks about the small red sign in the corner.</think>",
    "<tool_call>"
    + '{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [10, 20, 110, 220], "label": "sign"}}'
    + "</tool_call>",
    "<box>[0, 12, 345, 678]</box> <answer>B</answer> <answer>yes</answer> <answer>no</answer>",
    "<tool_response>Zoomed in on region. The cropped image is 112x84 pixels.</tool_response>",
    '{"bbox_2d": [1, 2, 3, 4], "label": "the man on the left"} (12,34),(56,78)',
    "You are a helpful assistant. Answer the question about the image. The image is 448x336 pixels.",
    "What is the colour of the umbrella? A. red B. blue C. green D. yellow Option (C) three 3.0 0.5",
    "Locate the object described by the expression and output its bounding box.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,:;!?()[]{}<>/\\\"'=+-*_#@%&|~^$`",
]


def build_tokenizer(vocab_size: int = 800):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with Qwen2.5-VL's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    fast.add_tokens(ADDED_TOKENS)
    fast.chat_template = CHAT_TEMPLATE.read_text()
    return fast


def build_processor(min_pixels: int = TINY_MIN_PIXELS, max_pixels: int = TINY_MAX_PIXELS, tokenizer=None):
    """The real ``Qwen2_5_VLProcessor`` around the tiny tokenizer, resizing with the given pixel bounds."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tokenizer = tokenizer or build_tokenizer()
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    image_processor = Qwen2VLImageProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2)
    video_processor = Qwen2VLVideoProcessor(patch_size=14, merge_size=2, temporal_patch_size=2)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=tokenizer.chat_template,
    )


def build_config(tokenizer):
    """A Qwen2.5-VL config with tiny sizes whose token ids match ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            # head_dim 32 (64 / 2): vLLM's CPU attention needs head_dim >= 32; mrope_section sums to head_dim / 2.
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]},
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
            "window_size": 112,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
        # veRL's HFModelConfig requires exactly one architecture, also for config-only folders.
        architectures=["Qwen2_5_VLForConditionalGeneration"],
    )


def build_tiny_qwen25vl(
    out_dir: str | Path,
    *,
    with_model: bool = True,
    seed: int = 0,
    min_pixels: int = TINY_MIN_PIXELS,
    max_pixels: int = TINY_MAX_PIXELS,
) -> Path:
    """Write tokenizer, processor and (optionally) random weights to ``out_dir``, loadable with ``from_pretrained``."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    processor = build_processor(min_pixels, max_pixels, tokenizer)
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    config = build_config(tokenizer)
    if with_model:
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
        model.generation_config = GenerationConfig(
            eos_token_id=config.text_config.eos_token_id, pad_token_id=config.text_config.pad_token_id
        )
        model.save_pretrained(out)
    else:
        config.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the checkpoint to")
    parser.add_argument("--no-model", action="store_true", help="write tokenizer, processor and config only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = build_tiny_qwen25vl(args.out, with_model=not args.no_model, seed=args.seed)
    print(path)


if __name__ == "__main__":
    main()
