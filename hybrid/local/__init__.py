"""The local model: llama.cpp in this process, its queue, chat formatting and speed."""
