"""Per-task converters of official downstream raw files (for `synthetic-pretraining prepare`).

Importing this package is cheap: no TensorFlow, seqio or JAX.
"""

from synthetic_pretraining.data.downstream.base import Converted
from synthetic_pretraining.data.downstream.base import Converter
from synthetic_pretraining.data.downstream.base import PrepareOptions
from synthetic_pretraining.data.downstream.cnndm import CnnDailymail
from synthetic_pretraining.data.downstream.code_translation import CodeTranslation
from synthetic_pretraining.data.downstream.common import PrepareError
from synthetic_pretraining.data.downstream.common import default_data_dir
from synthetic_pretraining.data.downstream.mtop import Mtop
from synthetic_pretraining.data.downstream.retrosynthesis import Retrosynthesis
from synthetic_pretraining.data.downstream.squad import Squad
from synthetic_pretraining.data.downstream.webqsp import WebQSP

CONVERTERS: dict[str, Converter] = {
    c.name: c for c in (CnnDailymail(), CodeTranslation(), Mtop(), Retrosynthesis(), Squad(),
                        WebQSP())
}
TASK_NAMES = tuple(CONVERTERS)
