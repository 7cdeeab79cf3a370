"""The service's names as plain enums: models, styles, ratios and the 20 Emoji templates.

No pydantic and no aiohttp here, so that the command line can build its parser (choices,
help) without loading the client.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DRIVEN_IDS", "DrivenId", "Model", "Ratio", "StyleLevel"]


class Model(StrEnum):
    """The four DashScope model names this client speaks."""

    EMO = "emo-v1"
    EMOJI = "emoji-v1"
    EMO_DETECT = "emo-detect-v1"
    EMOJI_DETECT = "emoji-detect-v1"


class StyleLevel(StrEnum):
    """emo-v1 ``style_level``: how strongly the portrait moves."""

    NORMAL = "normal"
    CALM = "calm"
    ACTIVE = "active"


class Ratio(StrEnum):
    """emo-detect-v1 ``ratio``: 1:1 head shot (512x512) or 3:4 half body (512x704)."""

    SQUARE = "1:1"
    PORTRAIT = "3:4"


class DrivenId(StrEnum):
    """The 20 emoji-v1 expression templates (``driven_id``)."""

    MENGWA_KAIXIN = "mengwa_kaixin"
    MENGWA_DENGYAN = "mengwa_dengyan"
    MENGWA_GANDONG = "mengwa_gandong"
    MENGWA_RENZHEN_1 = "mengwa_renzhen_1"
    MENGWA_JIDONG = "mengwa_jidong"
    MENGWA_KUN_1 = "mengwa_kun_1"
    MENGWA_JIAOXIE = "mengwa_jiaoxie"
    DAGONG_KAIXIN = "dagong_kaixin"
    DAGONG_YANGWANG = "dagong_yangwang"
    DAGONG_KUNHUO = "dagong_kunhuo"
    DAGONG_ZHUAKUANG = "dagong_zhuakuang"
    DAGONG_WUNAI = "dagong_wunai"
    DAGONG_WEIXIAO = "dagong_weixiao"
    DAGONG_GANJI = "dagong_ganji"
    JINGDIAN_TIAOPI = "jingdian_tiaopi"
    JINGDIAN_DEYI_1 = "jingdian_deyi_1"
    JINGDIAN_QIDAI = "jingdian_qidai"
    JINGDIAN_LANDUO_1 = "jingdian_landuo_1"
    JINGDIAN_XIANQI = "jingdian_xianqi"
    JINGDIAN_LEI = "jingdian_lei"


DRIVEN_IDS: tuple[str, ...] = tuple(d.value for d in DrivenId)
"""The 20 template ids, in the documentation's order (:class:`DrivenId` is the one list)."""
