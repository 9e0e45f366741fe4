"""Evaluation: metrics to measure what a model or a retriever does.

`aikit.evals.retrieval` holds the ranking metrics (`hit_at_k`, `recall_at_k`,
`precision_at_k`, `mrr`, `ndcg_at_k`), re-exported here. Evals of a model or pipeline:
`Dataset`, the metrics (`exact_match`, `contains`, `token_f1`, ...; any function
`(output, expected) -> float`), `judge` / `calibrate`, `evaluate` -> `EvalResult`, and
`compare` -> `Comparison` (`per_item`: a metric's mean per item). Agreement with people:
`cohen_kappa`, `kappa_interval`, `wilson_interval`, `claim_report` on labelled claims. RAG
answers: `faithfulness`, `answer_relevance`,
`context_precision`, `context_recall` (`aikit.evals.rag_metrics`; offline on the embedded
embedding model, or with a judge). Tasks (`aikit.evals.tasks`): `prompt_task` and
`prompt_variants` (a prompt variant: template, system instruction, few-shot examples, per kind
of item) and `rag_task` (`rag.answer` over an index).
"""

from aikit.errors import DatasetError
from aikit.evals.agreement import (
    ClaimReport,
    claim_report,
    kappa_interval,
    load_claims,
    wilson_interval,
)
from aikit.evals.claim_check import ClaimCheck
from aikit.evals.compare import Comparison, compare
from aikit.evals.dataset import Dataset, Item
from aikit.evals.evaluate import EvalResult, evaluate, per_item
from aikit.evals.judge import Calibration, Judge, calibrate, cohen_kappa, judge
from aikit.evals.metrics import (
    contains,
    edit_ratio,
    embedding_similarity,
    exact_match,
    json_schema,
    json_valid,
    keywords,
    numeric_match,
    regex_match,
    token_f1,
)
from aikit.evals.rag_metrics import (
    answer_relevance,
    claim_checks,
    claim_support,
    context_precision,
    context_recall,
    faithfulness,
    numbered,
    split_claims,
    support_judge,
)
from aikit.evals.retrieval import dcg, hit_at_k, mrr, ndcg_at_k, precision_at_k, recall_at_k
from aikit.evals.tasks import prompt_task, prompt_variants, rag_task

__all__ = [
    "Calibration",
    "ClaimCheck",
    "ClaimReport",
    "Comparison",
    "Dataset",
    "DatasetError",
    "EvalResult",
    "Item",
    "Judge",
    "answer_relevance",
    "calibrate",
    "claim_checks",
    "claim_report",
    "claim_support",
    "cohen_kappa",
    "compare",
    "contains",
    "context_precision",
    "context_recall",
    "dcg",
    "edit_ratio",
    "embedding_similarity",
    "evaluate",
    "exact_match",
    "faithfulness",
    "hit_at_k",
    "json_schema",
    "json_valid",
    "judge",
    "kappa_interval",
    "keywords",
    "load_claims",
    "mrr",
    "ndcg_at_k",
    "numbered",
    "numeric_match",
    "per_item",
    "precision_at_k",
    "prompt_task",
    "prompt_variants",
    "rag_task",
    "recall_at_k",
    "regex_match",
    "split_claims",
    "support_judge",
    "token_f1",
    "wilson_interval",
]
