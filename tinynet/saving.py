"""What a model tinynet saved says when it is loaded without ``import tinynet``.

Keras 3 finds a custom class of a ``.keras`` file by the name it was registered under
(``"tinynet>SpaceToDepth"``), in the registry that ``import tinynet`` fills. It imports the
``module`` the file records only for Keras' own packages (``keras``, ``keras_hub``, ``keras_cv``,
``keras_nlp``: ``keras/src/saving/serialization_lib.py``, ``_retrieve_class_or_fn``), so it
cannot load tinynet's classes by itself; ``keras.models.load_model`` fails with "Could not
locate class 'SpaceToDepth'. Make sure custom classes ... are imported ...", followed by the
object's config. That config is the one thing of ours the message shows, so every registered
tinynet class adds one entry to its config, ``REQUIRES_KEY``, that says what to do
(``import tinynet`` first), and its ``from_config`` drops the entry again. Files saved before
the entry existed load as they always did.
"""
import functools

PACKAGE = "tinynet"
REQUIRES_KEY = "requires"


def requirement(registered_name):
    """The value of ``REQUIRES_KEY`` in the config of the class registered as
    ``registered_name``."""
    return (f"import tinynet before keras.models.load_model: it registers {registered_name} "
            f"(pip install the tinynet package if it is missing)")


def mark(cls, registered_name):
    """Makes ``cls`` (registered as ``registered_name``) write ``requirement`` into its config
    and ignore it when it is rebuilt from one. Idempotent."""
    if cls.__dict__.get("_tinynet_marked"):
        return cls
    get_config = cls.get_config
    from_config = cls.from_config.__func__  # the function, so subclasses still build themselves

    @functools.wraps(get_config)
    def get_config_with_requirement(self):
        config = get_config(self)
        if isinstance(config, dict):
            config = {**config, REQUIRES_KEY: requirement(registered_name)}
        return config

    @functools.wraps(from_config)
    def from_config_without_requirement(klass, config):
        if isinstance(config, dict) and REQUIRES_KEY in config:
            config = {k: v for k, v in config.items() if k != REQUIRES_KEY}
        return from_config(klass, config)

    cls.get_config = get_config_with_requirement
    cls.from_config = classmethod(from_config_without_requirement)
    cls._tinynet_marked = True
    return cls


def mark_registered_classes():
    """``mark`` every class registered under the ``tinynet`` package (layers, losses, metrics,
    optimizers); run once they are all imported (``tinynet.register_keras_objects``)."""
    import keras

    for name, obj in keras.saving.get_custom_objects().items():
        if name.startswith(PACKAGE + ">") and isinstance(obj, type) and \
                hasattr(obj, "get_config") and hasattr(obj, "from_config"):
            mark(obj, name)
