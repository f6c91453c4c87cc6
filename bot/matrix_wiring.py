"""Building the Matrix channel for `lotse run`: what it needs from the core, passed in.

The channel imports nothing of the core but its types, so this is where the server
secret (for the encrypted login and the crypto store's pickle key), the texts and the
counsellors' Matrix ids are handed to it.
"""

from __future__ import annotations

from sqlalchemy import select

from bot.app import App
from bot.channels.matrix import Login, MatrixChannel
from bot.config import Config
from storage.models import Counsellor, CounsellorHandle

MEGABYTE = 1024 * 1024


def build_matrix(config: Config, app: App) -> MatrixChannel:
    matrix = config.matrix
    keys = app.store.keys
    login = Login(
        homeserver=matrix.homeserver.rstrip("/"),
        user_id=matrix.user_id,
        device_id=matrix.device_id,
        store_dir=matrix.store_dir,
        password_env=matrix.password_env,
        # deterministic and secret: the crypto store opens again only with this server secret
        pickle_key=keys.pseudonym("matrix crypto store", matrix.user_id),
    )

    async def counsellors() -> set[str]:
        query = (
            select(CounsellorHandle.handle)
            .join(Counsellor, Counsellor.id == CounsellorHandle.counsellor_id)
            .where(CounsellorHandle.channel == "matrix", Counsellor.revoked_at.is_(None))
        )
        async with app.store.unit() as unit:
            return set(await unit.session.scalars(query))

    def texts(key: str, language: str) -> str:
        return app.engine.texts.get(key, language)

    staff_here = config.staff.channel == "matrix"
    return MatrixChannel(
        login,
        keys,
        texts=texts,
        counsellors=counsellors,
        staff_room=config.staff.room if staff_here else None,
        staff_language=config.staff.language,
        max_file_bytes=matrix.max_file_mb * MEGABYTE,
    )
