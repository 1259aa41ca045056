"""Words for keyword (BM25) search in Chinese and English: the indexed text and the query terms.

Full-text indexes split text on spaces and punctuation, so a run of Chinese characters would be one
"word". Chinese runs are therefore cut into words with jieba (through `llmkit.segment`) and spaced,
both when indexing and when querying; other scripts are left to the index's own tokenizer (with stemming).
"""

from __future__ import annotations

import re

from llmkit.segment import segment

_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
_WORD = re.compile(r"\w+")
# Words in nearly every chunk: they cost time in an OR query and add nothing to the ranking.
STOPWORDS = frozenset(
    "a an and are as at be by did do does for from had has have how i in is it its of on or that the this to was "
    "were what when where which who whom whose why will with 的 了 是 在 和 与 或 吗 呢 吧 啊 么 什么 哪 哪里 哪个 "
    "谁 怎么 怎样 如何 为什么 多少 几 这 那 这个 那个 有 也 都 就 而 及 其 之".split()
)


def keyword_text(text: str) -> str:
    """`text` with its Chinese (and Japanese, Korean) runs cut into space-separated words: what gets indexed."""
    return _CJK_RUN.sub(lambda run: " " + " ".join(segment(run.group())) + " ", text)


def words(text: str) -> list[str]:
    """The words of `text` as written (case kept), its Chinese runs cut into words as `keyword_text` cuts them."""
    return _WORD.findall(keyword_text(text))


def keyword_terms(query: str) -> list[str]:
    """The distinct lower-cased words of a query, stop words left out, in the order they appear."""
    terms = dict.fromkeys(word.lower() for word in words(query))
    return [term for term in terms if term not in STOPWORDS]
