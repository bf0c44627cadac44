"""napari_xt.train"""
