"""napari_xt.engine"""
