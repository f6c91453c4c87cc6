"""The Matrix channel (matrix-nio with end-to-end encryption): see channel.py."""

from bot.channels.matrix.channel import MatrixChannel
from bot.channels.matrix.session import Login, MatrixStartError, Sealer

__all__ = ["Login", "MatrixChannel", "MatrixStartError", "Sealer"]
