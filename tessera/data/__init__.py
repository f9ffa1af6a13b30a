"""tessera.data: readers for the standard released dataset files under a data root, md5-verified.

Root: ``--data-root`` > ``$TESSERA_DATA`` > ``~/.cache/tessera/data``. Nothing is ever written to the root
except by ``download=True``; decoding happens in memory.

>>> from tessera.data import sklearn_digit_domains
>>> x, y = sklearn_digit_domains(16)["boundary"]
>>> tuple(x.shape), int(y.max())
((1797, 1, 16, 16), 9)
"""
from __future__ import annotations

from .check import check_dataset, check_datasets, format_check_table
from .domains import (DIGIT_DOMAINS, DOMAIN_DEFAULTS, digit_domain, load_digit_domain, resize, sklearn_digit_domains,
                      sklearn_digits, to_grayscale)
from .fetch import Located, require
from .files import download_url, file_md5, verify_file
from .genomics import deepbind_tfs, dinucleotide_shuffle, load_crispr, load_deepbind, one_hot_dna, read_seq_gz
from .images import IMAGE_DATASETS, load_images
from .muir import load_muir_synthetic, muir_validation_indices
from .office import OFFICE_DOMAINS, load_office_surf
from .registry import DATASETS, ArchiveSpec, DatasetSpec, FileSpec, get_spec
from .root import resolve_root
from .safe_pickle import RestrictedUnpickler, safe_load, safe_load_file
from .splits import split_indices
from .text import TEXT_DATASETS, Vocab, load_text

__all__ = ["resolve_root", "DATASETS", "require", "load_images", "load_text", "Vocab", "load_deepbind",
           "load_crispr", "load_office_surf", "load_muir_synthetic", "load_digit_domain", "DIGIT_DOMAINS",
           "sklearn_digit_domains", "check_datasets", "split_indices", "dinucleotide_shuffle", "safe_load"]
"""The public surface; the other names imported above are for tessera's own packages (import them from
their modules; they may change)."""
