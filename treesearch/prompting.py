"""Prompt templates: how a user turn becomes the text a model is conditioned on.

``chat`` applies the tokenizer's own chat template with a generation prompt
(Qwen2.5-Math-Instruct, the embedded default); any other string is a format
string with a ``{prompt}`` field, for base models (e.g. ``"Question: {prompt}\\nAnswer:\\n"``).
`encode_prompt` turns the rendered text into ids with the BOS the tokenizer expects in front
(Llama-2, Llama-3), once: a chat template that writes BOS itself does not get a second.
"""
from __future__ import annotations

CHAT = "chat"


def render_prompt(tokenizer, user_text: str, template: str = CHAT, system: str | None = None) -> str:
    if template == CHAT:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("prompt template 'chat' needs a tokenizer with a chat_template; pass a format string")
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user_text}
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if "{prompt}" not in template:
        raise ValueError(f"prompt template must be 'chat' or contain '{{prompt}}', got {template!r}")
    return template.format(prompt=user_text)


def encode_prompt(tokenizer, user_text: str, template: str = CHAT, system: str | None = None) -> list[int]:
    """Token ids of the rendered prompt: special tokens in the text parsed as such, nothing added
    but the BOS the model expects (`treesearch.backends.text.bos_ids`)."""
    from treesearch.backends.text import bos_ids

    text = render_prompt(tokenizer, user_text, template, system)
    return bos_ids(tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"])
