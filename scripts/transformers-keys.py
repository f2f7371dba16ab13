#!/usr/bin/env python3
"""Expected tensor names of transformers' Higgs Audio v2 classes, for our random checkpoints.

Not run by CI (it has no torch). Run by hand in a scratch virtualenv with `torch`, `torchaudio`
and `transformers` (>= the first release with `higgs_audio_v2`):

    higgs-serve dev make-checkpoint --preset tiny --layout hf --out DIR
    python scripts/transformers-keys.py DIR crates/model/tests/data crates/codec/tests/data

It loads DIR/model and DIR/codec with `from_pretrained(..., output_loading_info=True)`, prints the
missing / unexpected / mismatched keys (all must be empty), and writes the `state_dict()` names and
shapes of the models transformers built to `transformers_keys_{llm,codec}.txt`, which
`cargo test -p higgs-model --test transformers_keys` and `-p higgs-codec` compare our writers
against.
"""
import sys

import torch
import transformers
from transformers import HiggsAudioV2ForConditionalGeneration, HiggsAudioV2TokenizerModel

root, llm_out, codec_out = sys.argv[1:4]
version = f"transformers {transformers.__version__} (torch {torch.__version__.split('+')[0]})"
failed = False
for cls, sub, out, name, note in (
    (HiggsAudioV2ForConditionalGeneration, "model", llm_out, "llm",
     "text_lm_head.weight is not listed: the class is built with use_text_head=False (the default) "
     "and ignores it on load (_keys_to_ignore_on_load_unexpected); we write it unless --no-text-head."),
    (HiggsAudioV2TokenizerModel, "codec", codec_out, "codec", None),
):
    model, info = cls.from_pretrained(f"{root}/{sub}", output_loading_info=True)
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        found = sorted(str(k) for k in (info.get(key) or []))
        print(f"{cls.__name__} {key}: {found}")
        failed |= bool(found)
    with open(f"{out}/transformers_keys_{name}.txt", "w") as f:
        f.write(f"# {version}: {cls.__name__}.from_pretrained(DIR/{sub}, output_loading_info=True)"
                " found no missing, unexpected or mismatched keys; its state_dict() names and shapes follow.\n")
        f.write("# DIR = `higgs-serve dev make-checkpoint --preset tiny --layout hf --out DIR`; "
                "written by scripts/transformers-keys.py.\n")
        if note:
            f.write(f"# {note}\n")
        for k, v in model.state_dict().items():
            f.write(f"{k} {list(v.shape)}\n")
sys.exit(1 if failed else 0)
