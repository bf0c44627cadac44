"""napari_xt.io"""
