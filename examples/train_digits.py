"Train a 20 x 20 hex SOM on scikit-learn's digits with the bare engine and print its quality."
import time, torch
from sklearn.datasets import load_digits
from fastsom.all import Som

x = torch.tensor(load_digits().data, dtype=torch.float32)
x = (x - x.mean(0)) / x.std(0).clamp(min=1e-8)
som = Som((20, 20), x.shape[1], topology='hex')
start = time.perf_counter()
som.fit(x, epochs=20, bs=256, seed=0)
print(f"digits {tuple(x.shape)} on a 20x20 hex map: {time.perf_counter() - start:.2f}s, "
      f"QE {som.quantization_error(x):.3f}, TE {som.topographic_error(x):.3f}")
