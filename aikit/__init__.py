"""aikit: a Jupyter-based team playbook and notebook kit for AI engineers.

The verbs most people need are here; the modules (`aikit.cache`, `aikit.local`, `aikit.prompts`,
`aikit.settings`, `aikit.usage`) hold the rest.
"""

from aikit.errors import AikitError
from aikit.llm import Reply, achat, chat
from aikit.prompts import Template, few_shot
from aikit.settings import Settings, configure, get_settings
from aikit.usage import usage

__all__ = [
    "AikitError",
    "Reply",
    "Settings",
    "Template",
    "achat",
    "chat",
    "configure",
    "few_shot",
    "get_settings",
    "usage",
]
