"""New model instances for hot paths, without `Model.__init__`'s general keyword handling.

`Model.__init__` looks every field up in the keywords, sets each value through its descriptor, computes every
default through `Field.get_default`, and sends `pre_init` and `post_init`: for the run and the step rows a
trigger makes, 6 % of the trigger's instructions (docs/performance.md). `new(model, **values)` makes the
same instance — values by field name or attname, a foreign key's related instance (or None) set through its
descriptor as the constructor sets it, every other field its default — in half the time. It falls back to
the model's constructor when anything listens to `pre_init` or `post_init` for the model, or the model has
private fields (a generic foreign key)."""

from functools import cache

from django.db.models import signals
from django.db.models.base import ModelState


@cache
def _plan(model):
    fields = model._meta.concrete_fields
    by_name = {field.attname: (field, False) for field in fields}
    by_name.update({field.name: (field, field.is_relation) for field in fields})
    defaults = tuple((field.attname, field._get_default) for field in fields)
    return by_name, defaults, bool(model._meta.private_fields)


def _listened(model) -> bool:
    return bool(signals.pre_init.receivers or signals.post_init.receivers) and (
        signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model)
    )


def new(model, /, **values):
    """`model(**values)`, as Django would make it: unsaved (`_state.adding`), foreign keys given as instances
    cached on it. A keyword that names no concrete field is a TypeError, as in `model(**values)`."""
    by_name, defaults, private = _plan(model)
    if private or _listened(model):
        return model(**values)
    instance = model.__new__(model)
    instance._state = ModelState()
    attributes = instance.__dict__
    for name, value in values.items():
        try:
            field, related = by_name[name]
        except KeyError:
            raise TypeError(f"{model.__name__}() got unexpected keyword arguments: '{name}'") from None
        if related:  # through the descriptor, as the constructor does (the key, the cache, `_state.db`)
            setattr(instance, name, value)
        else:
            attributes[field.attname] = value
    for attname, default in defaults:
        if attname not in attributes:
            attributes[attname] = default()
    return instance
