"""``ModelPicker``: choose the local model the daemon switches to."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class ModelPicker(ModalScreen[str | None]):
    """The models the daemon can load; Enter picks one, Esc closes without a switch.

    Args:
        current: The model served now (marked in the list).
        names: The models the daemon lists.
    """

    BINDINGS = [  # noqa: RUF012 - Textual's declared type
        Binding("escape,q", "dismiss_none", "close"),
    ]

    def __init__(self, current: str, names: list[str]) -> None:
        super().__init__()
        self._current = current
        self._names = names

    def compose(self) -> ComposeResult:
        with Vertical(id="model-picker"):
            yield Static("switch the local model to:")
            yield OptionList(
                *(
                    Option(f"{name}  (serving)" if name == self._current else name, id=name)
                    for name in self._names
                )
            )

    def on_mount(self) -> None:
        picker = self.query_one("#model-picker")
        picker.border_title = "local model"
        picker.border_subtitle = "Enter switches, Esc closes"

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        """Close without switching."""
        self.dismiss(None)
