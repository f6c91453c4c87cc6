"""The questionnaire as a Mermaid flowchart (`lotse flow graph`)."""

from __future__ import annotations

from flows.questionnaire import Questionnaire

SHAPES = {
    "consent": ("{{", "}}"),
    "info": ("[/", "/]"),
    "summary": ("([", "])"),
}


def mermaid(questionnaire: Questionnaire, language: str | None = None) -> str:
    language = language or questionnaire.meta.default_language
    lines = ["flowchart TD"]
    for step in questionnaire.steps.values():
        opening, closing = SHAPES.get(step.kind, ("[", "]"))
        title = step.label.get(language) or step.id
        optional = "" if step.required or not step.is_question else ", optional"
        urgent = ", marks urgent" if step.marks_urgent else ""
        text = f"{title}<br/><small>{step.kind}{optional}{urgent}</small>".replace('"', "'")
        lines.append(f'    {step.id}{opening}"{text}"{closing}')
    for step in questionnaire.steps.values():
        for rule in step.next:
            if rule.when:
                label = " and ".join(condition.describe() for condition in rule.when).replace(
                    '"', "'"
                )
                lines.append(f'    {step.id} -->|"{label}"| {rule.goto}')
            else:
                lines.append(f"    {step.id} --> {rule.goto}")
    summary = questionnaire.summary.id
    lines.append(f"    {summary} -->|submit| submitted((case))")
    return "\n".join(lines) + "\n"
