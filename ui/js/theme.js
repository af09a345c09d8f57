// Light, dark or the system's theme; the choice is kept in localStorage.
export function chosenTheme() {
  return localStorage.getItem('orki.theme') || 'system';
}

export function applyTheme(choice = chosenTheme()) {
  if (choice === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = choice;
}

export function setTheme(choice) {
  localStorage.setItem('orki.theme', choice);
  applyTheme(choice);
}
