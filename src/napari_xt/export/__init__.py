"""napari_xt.export"""
