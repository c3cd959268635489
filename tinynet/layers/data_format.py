"""Resolution of the ``data_format`` argument shared by every tinynet layer and builder."""
import keras

DATA_FORMATS = ("channels_last", "channels_first")


def standardize_data_format(data_format):
    """``None`` -> ``keras.config.image_data_format()``; anything else must be a known format."""
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"Invalid value for argument `data_format`: expected one of {DATA_FORMATS}. "
            f"Received: data_format={data_format!r}"
        )
    return data_format
